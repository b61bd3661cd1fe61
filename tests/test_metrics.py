import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ncseg.metrics import best_threshold, diameter_error, jaccard, jaccard_sweep, match_objects, score

masks = arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12)))


def test_hand_computed_case():
    pred = np.array([[1, 1, 0, 0]], bool)
    truth = np.array([[0, 1, 1, 0]], bool)
    s = score(pred, truth)
    assert s.jaccard == pytest.approx(1 / 3)
    assert s.dice == pytest.approx(0.5)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)


@given(masks, st.data())
@settings(max_examples=60, deadline=None)
def test_jaccard_bounded_symmetric_and_one_iff_equal(a, data):
    b = data.draw(arrays(bool, a.shape))
    j = jaccard(a, b)
    assert 0.0 <= j <= 1.0
    assert j == jaccard(b, a)
    assert (j == 1.0) == bool(np.array_equal(a, b))


@given(masks, st.data())
@settings(max_examples=40, deadline=None)
def test_dice_is_a_monotone_function_of_jaccard(a, data):
    b = data.draw(arrays(bool, a.shape))
    s = score(a, b)
    assert s.dice == pytest.approx(2 * s.jaccard / (1 + s.jaccard))


def test_objects_match_one_to_one_at_iou_half():
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = truth[10:14, 10:14] = True
    pred = np.zeros_like(truth)
    pred[2:6, 2:5] = True  # IoU 0.75 with the first NC
    pred[10:12, 10:12] = True  # IoU 0.25 with the second: not a match
    pred[16:19, 1:3] = True  # a false detection
    assert match_objects(pred, truth) == (1, 3, 2)
    s = score(pred, truth)
    assert s.object_precision == pytest.approx(1 / 3) and s.object_recall == pytest.approx(0.5)
    assert s.object_f1 == pytest.approx(0.4)


def test_two_empty_masks_agree_perfectly():
    empty = np.zeros((4, 4), bool)
    s = score(empty, empty)
    assert s.jaccard == s.dice == s.precision == s.recall == 1.0
    assert match_objects(empty, empty) == (0, 0, 0)


def test_sweep_finds_the_threshold_that_separates_the_classes():
    truth = np.zeros((10, 10), bool)
    truth[:, :5] = True
    prob = np.where(truth, 0.62, 0.4)
    grid = [0.1, 0.3, 0.5, 0.7, 0.9]
    curve = jaccard_sweep([prob], [truth], grid)
    assert curve[2] == 1.0 and curve[3] == 0.0
    assert best_threshold([prob], [truth], grid) == 0.5


def test_the_diameter_error_is_the_bias_of_the_mean_particle_size_pooled_over_images():
    truth = np.zeros((40, 40), bool)
    truth[5:9, 5:9] = truth[20:28, 20:28] = True  # 4 and 8 px squares
    grown = np.zeros_like(truth)
    grown[4:10, 4:10] = grown[19:29, 19:29] = True  # each 1 px larger all round
    empty = np.zeros_like(truth)
    d = lambda side: np.sqrt(4 * side**2 / np.pi)  # noqa: E731
    expected = (d(6) + d(10)) / (d(4) + d(8)) - 1
    assert diameter_error([grown, empty], [truth, empty]) == pytest.approx(expected)  # an empty image adds nothing
    assert diameter_error([truth], [truth]) == 0.0
    assert diameter_error([empty], [truth]) == -1.0  # nothing found: the whole size is missed
    assert diameter_error([grown], [empty]) is None  # no reference particle: no size to miss
