"""The label-consistency diagnostic: two views of one field, moved and turned, are put back on each other before
their masks are compared, so the score measures the labels, not the alignment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from benchmarks.label_consistency import Alignment, align, error_places, pair_counts, summary


def _field(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.normal(size=(160, 160)), 3)


@pytest.mark.parametrize(("flip", "k"), [(False, 0), (False, 1), (True, 3)])
def test_a_moved_and_turned_copy_is_put_back_where_it_was(flip, k):
    field = _field()
    a = field[10:138, 10:138]
    moved = field[4:132, 17:145]  # the same field 6 px up and 7 px right of a
    b = np.rot90(moved, -k).T if flip else np.rot90(moved, -k)  # so that turning it back gives `moved`
    at = align(a, b)
    pa, pb = at.overlap(a, b)
    assert (at.flip, at.k) == (flip, k) and at.r > 0.999
    np.testing.assert_array_equal(pa, pb)
    assert pa.shape == (128 - 6, 128 - 7)


def test_class_maps_are_compared_on_the_overlap_only():
    a = np.zeros((8, 8), np.uint8)
    a[2:4, 2:4] = 2  # a particle
    a[5:, :] = 1  # a support band
    b = np.roll(a, 1, axis=1)  # the same map one pixel to the right; the column that wraps round is off the overlap
    counts = pair_counts(a, b, Alignment(False, 0, 0, -1, 1.0), (1, 2))
    assert counts[2] == (4, 4) and counts[1] == (21, 21) and counts[0] == (25, 25)
    assert pair_counts(a, b, Alignment(False, 0, 0, 0, 1.0), (1, 2))[2] == (2, 6)  # unaligned: half the particle


def test_pairs_pool_their_pixels_and_pairs_without_the_class_count_in_neither_score():
    small = {0: (1, 4), 2: (1, 4)}  # a pair whose particle maps overlap by a quarter
    large = {0: (90, 100), 2: (0, 0)}  # a pair with no particle in either map
    pooled, mean = summary([small, large])[0]
    assert pooled == pytest.approx(91 / 104) and mean == pytest.approx((0.25 + 0.9) / 2)
    assert summary([small, large])[2] == (0.25, 0.25)
    assert all(np.isnan(v) for v in summary([large])[2])


def test_a_misplaced_outline_is_told_from_a_wrong_region():
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True
    pred = np.roll(truth, 1, axis=1)  # the outline one pixel to the right
    pred[10:20, 21] = True  # and a second column, 2 px out
    pred[30:34, 30:34] = True  # and a particle the expert did not draw, far from any outline
    places = error_places(pred, truth)
    assert (places["predicted"], places["expert"]) == (126, 100)
    assert places["missed"] == places["missed within 1 px"] == places["missed within 2 px"] == 10
    assert (places["extra"], places["extra within 1 px"], places["extra within 2 px"]) == (36, 10, 20)


def test_the_image_frame_is_not_an_outline():
    truth = np.zeros((20, 20), bool)
    truth[:, :10] = True  # a region running off the image on three sides
    pred = truth.copy()
    pred[0, :9] = False  # missed along the frame, away from the outline: not where the expert drew one
    pred[5:15, 9] = False  # missed along the region's one real outline
    places = error_places(pred, truth)
    assert (places["missed"], places["missed within 1 px"]) == (19, 10)
