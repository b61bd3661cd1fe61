"""The local-contrast diagnostic: a top-hat separates particles from a background that a global cut cannot, a
union of two cuts takes what either map finds, each cut is fitted on the training side only, and the nested choice
takes the feature the training side prefers."""

from __future__ import annotations

import numpy as np

from benchmarks.local_contrast import best_cuts, fold_scores, predict, smoothed, top_hat

SHAPE = (96, 96)


def _field(level: float) -> tuple[np.ndarray, np.ndarray]:
    """A support whose brightness ramps from 0 to 200 across the field, two small particles 60 counts above it:
    one on the dark side, one on the bright side."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = ((yy - 48) ** 2 + (xx - 16) ** 2 <= 9) | ((yy - 48) ** 2 + (xx - 80) ** 2 <= 9)
    raw = level + 200.0 * xx / SHAPE[1] + 60.0 * truth
    return raw.astype(np.uint16), truth


def test_the_best_cut_is_the_one_with_the_best_pooled_jaccard():
    values = [(np.arange(100, dtype=np.float32).reshape(10, 10),)]
    truths = [values[0][0] >= 70]
    (cut,), score = best_cuts(values, truths)
    assert score == 1.0 and 69 < cut <= 70
    assert np.array_equal(predict(values[0], (cut,)), truths[0])


def test_training_images_without_the_class_predict_nothing():
    values = [(np.arange(100, dtype=np.float32).reshape(10, 10),)]
    cuts, score = best_cuts(values, [np.zeros((10, 10), bool)])
    assert score == 1.0 and not predict(values[0], cuts).any()


def test_a_union_of_two_cuts_takes_what_either_map_finds():
    a = np.tile(np.arange(10.0), (10, 1))  # columns 8-9 are bright in a
    b = a.T.copy()  # rows 8-9 are bright in b
    truth = (a >= 8) | (b >= 8)
    _, one = best_cuts([(a,)], [truth])
    cuts, both = best_cuts([(a, b)], [truth])
    assert one < 0.6 and both == 1.0
    assert np.array_equal(predict((a, b), cuts), truth)


def test_a_top_hat_finds_particles_on_a_ramp_a_global_cut_cannot():
    raw, truth = _field(100.0)
    _, global_score = best_cuts([(smoothed(raw),)], [truth])
    _, local_score = best_cuts([(top_hat(smoothed(raw), 8),)], [truth])
    assert global_score < 0.5, "the bright end of the ramp outshines the dark-side particle"
    assert local_score > 0.8


def test_cuts_are_fitted_on_the_training_side_and_the_nested_choice_follows_it():
    fields = [_field(level) for level in (0.0, 50.0, 100.0, 150.0)]
    truths = [t for _, t in fields]
    features = {
        "global": [(smoothed(r),) for r, _ in fields],
        "local": [(top_hat(smoothed(r), 8),) for r, _ in fields],
        "noise": [(np.random.default_rng(i).random(SHAPE),) for i in range(4)],
    }
    per_image = fold_scores(features, truths, [[0, 1], [2, 3]], {"nested": ["global", "local", "noise"]})
    assert set(per_image) == {0, 1, 2, 3}
    for row in per_image.values():
        assert row["nested"] == row["local"] > row["global"]
    # the training side decides: a feature perfect on the training images and blind on the test ones is chosen
    overfit = [(np.where(t, 1.0, 0.0) if i in (0, 1) else np.zeros(SHAPE),) for i, t in enumerate(truths)]
    scores = fold_scores({"overfit": overfit} | features, truths, [[2, 3]], {"nested": ["overfit", "local"]})
    assert all(scores[i]["nested"] == scores[i]["overfit"] < scores[i]["local"] for i in (2, 3))
