"""The particle error budget: each kind of error is taken away on its own, and the particle table sorts objects by
what happened to them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from benchmarks.particle_errors import _ring, error_budget, one_pixel, particles


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
    assert budget["outlines of the particles found"] == 1.0, "the one particle found has the expert's outline"


def test_the_outlines_are_scored_on_the_particles_found_only():
    smaller = _disc(SHAPE, (16, 16), 5)
    budget = error_budget(smaller | FALSE, FOUND | MISSED)
    assert np.isclose(budget["outlines of the particles found"], smaller.sum() / FOUND.sum())
    shrunk = budget["the particles found by the expert's outline shrunk 1 px"]
    assert shrunk == one_pixel(FOUND)["shrunk 1 px"] < 1.0, "only the found particle's outline, not the missed one's"


@pytest.mark.parametrize("k", [6, 12])
def test_one_pixel_of_outline_costs_what_it_does_on_a_square(k):
    square = np.zeros(SHAPE, bool)
    square[20 : 20 + k, 20 : 20 + k] = True
    moved = one_pixel(square)
    assert np.isclose(moved["shrunk 1 px"], (k - 2) ** 2 / k**2)
    assert np.isclose(moved["grown 1 px"], k**2 / (k**2 + 4 * k))
    assert np.isclose(moved["moved 1 px"], (k - 1) / (k + 1))


def test_a_particle_cut_by_the_image_edge_is_not_shrunk_along_the_edge():
    edge = np.zeros(SHAPE, bool)
    edge[:4, 10:14] = True  # 4 x 4 on the top edge: one pixel off three sides leaves 3 x 2
    assert np.isclose(one_pixel(edge)["shrunk 1 px"], 6 / 16)


def test_particles_are_sorted_into_found_missed_and_false_with_their_contrast():
    truth, pred = FOUND | MISSED, FOUND | FALSE
    raw = np.full(SHAPE, 10.0)
    raw[FOUND], raw[MISSED], raw[FALSE] = 110.0, 40.0, 70.0
    prob = np.where(pred, 0.6, 0.1)
    prob[16, 16] = 0.95  # the found particle's peak
    found = {p.kind: p for p in particles(pred, truth, prob, raw, reference=10.0)}
    assert sorted(found) == ["false", "found", "missed"]
    assert (found["found"].contrast, found["missed"].contrast, found["false"].contrast) == (100.0, 30.0, 60.0)
    assert found["found"].peak == 0.95 and found["false"].peak == 0.6 and found["missed"].peak == 0.1
    assert found["missed"].area_px == int(MISSED.sum())


def test_a_false_particle_that_only_borders_an_expert_one_finds_nothing():
    beside = np.zeros(SHAPE, bool)
    beside[10:23, 23:26] = True  # the column next to FOUND's right edge (x = 22), not on it
    assert not (beside & FOUND).any() and (np.roll(beside, -1, axis=1) & FOUND).any()
    kinds = sorted(p.kind for p in particles(beside, FOUND, beside.astype(float), np.zeros(SHAPE), 0.0))
    assert kinds == ["false", "missed"]
    assert error_budget(beside, FOUND)["without false particles"] == 0.0


def test_a_particle_is_measured_against_the_support_around_it_not_the_image_median():
    """A faint particle on a bright patch of support is bright by the image's median but not by its surroundings;
    its local contrast counts the ring's noise (ring: 2-4 px away, no particle pixels)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    raw = np.where((yy - 16) ** 2 + (xx - 48) ** 2 <= 10**2, 50.0, 10.0)  # the bright patch under MISSED
    raw += np.random.default_rng(0).normal(0.0, 5.0, SHAPE)
    raw[MISSED] = 60.0
    truth, pred = FOUND | MISSED, FOUND.copy()
    missed = next(p for p in particles(pred, truth, pred.astype(float), raw, reference=10.0) if p.kind == "missed")
    assert missed.contrast == pytest.approx(50.0)
    assert missed.local == pytest.approx(10.0, abs=1.0) and missed.local_snr == pytest.approx(2.0, rel=0.25)
    beside = np.zeros(SHAPE, bool)
    beside[14:19, 55:57] = True  # a false particle 3 px to its right, inside its ring's reach
    pred |= beside
    for level in (60.0, 250.0):  # a particle pixel in the ring would move its std, and so the local contrast's SNR
        raw[beside] = level
        again = next(p for p in particles(pred, truth, pred.astype(float), raw, 10.0) if p.kind == "missed")
        assert again.local_snr == pytest.approx(missed.local_snr, rel=0.05)


def test_a_minimum_area_drops_the_small_predicted_particles_only():
    truth, pred = FOUND | MISSED, FOUND | FALSE  # FALSE: 29 px, FOUND: 113 px
    budget = error_budget(pred, truth)
    assert budget["predicted particles under 16 px dropped"] == budget["as predicted (argmax)"]
    assert budget["predicted particles under 32 px dropped"] == budget["without false particles"]
    assert budget["predicted particles under 64 px dropped"] == budget["without false particles"]


def test_the_ring_is_the_support_two_to_four_pixels_from_the_particle():
    dot = np.zeros(SHAPE, bool)
    dot[32, 32] = True
    steps = ndi.distance_transform_cdt(~dot, metric="taxicab")
    np.testing.assert_array_equal(_ring(dot, dot), (steps >= 2) & (steps <= 4))
