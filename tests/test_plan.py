"""Split planning: no source crosses folds, and a fold's checkpoint images come from its own training side."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncseg.data.dataset import Sample
from ncseg.data.rotations import plan
from ncseg.training.plan import assign_folds, fit_and_validation, inner_validation_groups


@given(st.lists(st.integers(0, 14), min_size=5, max_size=60), st.integers(2, 5), st.integers(0, 10_000))
@settings(max_examples=80, deadline=None)
def test_no_group_ever_crosses_folds(group_ids, n_folds, seed):
    groups = [f"g{g}" for g in group_ids]
    if len(set(groups)) < n_folds:
        with pytest.raises(ValueError, match="groups"):
            assign_folds(groups, n_folds, seed)
        return
    folds = assign_folds(groups, n_folds, seed)
    assert set(folds) == set(range(n_folds))
    for g in set(groups):
        assert len({f for f, h in zip(folds, groups, strict=True) if h == g}) == 1


def test_the_studys_22_images_split_by_source_and_reproducibly(params):
    entries = plan([f"synth_{i:02d}" for i in range(12)], {}, params.augment, params.seed)
    groups = [e.group for e in entries]
    folds = assign_folds(groups, params.cv.n_folds, params.seed)
    assert folds == assign_folds(groups, params.cv.n_folds, params.seed)
    for e, f in zip(entries, folds, strict=True):
        source_fold = folds[[x.name for x in entries].index(e.source)]
        assert f == source_fold, f"{e.name} is in fold {f} but its source {e.source} in fold {source_fold}"


def test_inner_validation_takes_training_groups_only_and_never_all():
    train = ["a", "a", "b", "c", "d"]
    held = inner_validation_groups(train, 0.2, seed=1)
    assert len(held) == 1 and held <= set(train)
    assert len(inner_validation_groups(["a", "b"], 0.9, seed=1)) == 1


def test_inner_validation_groups_are_taken_from_the_training_side_and_never_fitted():
    groups = [f"g{i % 7}" for i in range(21)]
    samples = [Sample(f"s{i}", g, np.zeros(1), np.zeros(1), np.zeros(1, bool), None) for i, g in enumerate(groups)]
    folds = assign_folds(groups, 3, seed=1)
    for k in range(3):
        fit, val, inner = fit_and_validation(samples, folds, k, 0.3, seed=1)
        test_groups = {g for g, f in zip(groups, folds, strict=True) if f == k}
        fit_groups, val_groups = {s.group for s in fit}, {s.group for s in val}
        assert val_groups == inner and fit_groups and val_groups
        assert not fit_groups & val_groups and not (fit_groups | val_groups) & test_groups
        assert len(fit) + len(val) + sum(f == k for f in folds) == len(samples)
