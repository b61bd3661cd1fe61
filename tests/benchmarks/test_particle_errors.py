"""The particle error budget: each kind of error is taken away on its own, and the particle table sorts objects by
what happened to them."""

from __future__ import annotations

import numpy as np

from benchmarks.particle_errors import error_budget, one_pixel, particles


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


SHAPE = (64, 64)
FOUND, MISSED, FALSE = _disc(SHAPE, (16, 16), 6), _disc(SHAPE, (16, 48), 4), _disc(SHAPE, (48, 32), 3)


def test_each_kind_of_error_is_removed_on_its_own():
    truth, pred = FOUND | MISSED, FOUND | FALSE
    a, b, c = (int(m.sum()) for m in (FOUND, MISSED, FALSE))
    budget = error_budget(pred, truth)
    assert np.isclose(budget["as predicted (argmax)"], a / (a + b + c))
    assert np.isclose(budget["without false particles"], a / (a + b))
    assert np.isclose(budget["without missed particles"], (a + b) / (a + b + c))
    assert budget["outlines only (neither)"] == 1.0, "the one particle found has the expert's outline"


def test_outline_errors_are_all_that_is_left_when_every_particle_is_found():
    truth, pred = FOUND | MISSED, _disc(SHAPE, (16, 16), 5) | _disc(SHAPE, (16, 48), 3)
    budget = error_budget(pred, truth)
    assert budget["outlines only (neither)"] == budget["as predicted (argmax)"] < 1.0


def test_a_one_pixel_change_of_outline_costs_small_particles_more():
    small, large = one_pixel(_disc(SHAPE, (32, 32), 4)), one_pixel(_disc(SHAPE, (32, 32), 12))
    for key in small:
        assert small[key] < large[key] < 1.0, key


def test_particles_are_sorted_into_found_missed_and_false_with_their_contrast():
    truth, pred = FOUND | MISSED, FOUND | FALSE
    raw = np.full(SHAPE, 10.0)
    raw[FOUND], raw[MISSED], raw[FALSE] = 110.0, 40.0, 70.0
    prob = np.where(pred, 0.9, 0.1)
    found = {p.kind: p for p in particles(pred, truth, prob, raw, reference=10.0)}
    assert sorted(found) == ["false", "found", "missed"]
    assert (found["found"].contrast, found["missed"].contrast, found["false"].contrast) == (100.0, 30.0, 60.0)
    assert found["missed"].area_px == int(MISSED.sum()) and found["missed"].peak == 0.1
    assert found["false"].peak == 0.9
