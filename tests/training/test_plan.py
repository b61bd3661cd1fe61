"""Split planning: no source crosses folds, and a fold's checkpoint images come from its own training side."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncseg.data.dataset import Sample
from ncseg.data.leaks import Pair, join_groups
from ncseg.data.rotations import plan
from ncseg.data.synth import generate
from ncseg.training.plan import assign_folds, fit_and_validation, inner_validation_groups, leak_free, plan_repeats

from ..data.test_leaks import distinct_images, near_copies, view


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


def _samples(images: list[np.ndarray], groups: list[str]) -> list[Sample]:
    return [
        Sample(f"s{i}", g, im, np.zeros(1), np.zeros(1, bool), None)
        for i, (im, g) in enumerate(zip(images, groups, strict=True))
    ]


def test_near_copies_filed_under_other_groups_never_land_in_another_fold(params):
    """Neighbouring slices filed as separate groups (the real data's `source_slice`): every repeat keeps each near-copy
    in its original's fold, and an inner-validation split never puts one on each side."""
    fields = distinct_images(8)
    copies = near_copies(fields[0])
    images = [view(f) for f in fields] + [copies["flipped"], copies["shifted"], near_copies(fields[3])["re-noised"]]
    groups = [f"slice{i}" for i in range(len(images))]
    samples = _samples(images, groups)
    p = params.model_copy(update={"cv": params.cv.model_copy(update={"n_folds": 3, "repeats": 3})})
    for split in plan_repeats(samples, p):
        assert split.folds[8] == split.folds[9] == split.folds[0] and split.folds[10] == split.folds[3], split


@given(
    st.lists(st.integers(0, 11), min_size=6, max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=6),
    st.integers(2, 4),
    st.integers(0, 10_000),
)
@settings(max_examples=80, deadline=None)
def test_no_split_ever_separates_a_near_duplicate_pair(group_ids, links, n_folds, seed):
    groups = [f"g{g}" for g in group_ids]
    pairs = [Pair(a, b, 0.99) for a, b in links if a < len(groups) and b < len(groups) and a != b]
    joined = join_groups(groups, pairs, 0.9).groups
    assert {g for g in joined if "+" not in g} <= set(groups), "a group no pair touches keeps its name"
    if len(set(joined)) < n_folds:
        return
    folds = assign_folds(list(joined), n_folds, seed)
    assert all(folds[p.a] == folds[p.b] for p in pairs), "a pair split across folds"
    samples = _samples([np.zeros(1)] * len(joined), list(joined))
    for k in range(n_folds):
        if len({g for g, f in zip(joined, folds, strict=True) if f != k}) < 2:
            continue  # no inner validation to split
        fitted = {s.name for s in fit_and_validation(samples, folds, k, 0.3, seed)[0]}
        assert all((f"s{p.a}" in fitted) == (f"s{p.b}" in fitted) for p in pairs), "fitted on one of a pair only"


def test_the_demos_folds_do_not_change_it_has_no_near_copies_but_its_rotations(params):
    """The demo's 12 images and its 10 quarter-turned copies: the copies already share their source's group, so
    the leak check joins nothing and every repeat's folds are those of the plain grouped split."""
    demo = {s.name: s.image for s in generate(params.data.synth, params.seed)}
    entries = plan(sorted(demo), {}, params.augment, params.seed)
    images = [np.rot90(demo[e.source], e.rotation_deg // 90) for e in entries]
    samples = _samples(images, [e.group for e in entries])
    _, found = leak_free(samples, params.cv.leak_threshold)
    assert not found.joined and not found.pairs
    p = params.model_copy(update={"cv": params.cv.model_copy(update={"repeats": 3})})
    off = p.model_copy(update={"cv": p.cv.model_copy(update={"leak_threshold": None})})
    assert [s.folds for s in plan_repeats(samples, p)] == [s.folds for s in plan_repeats(samples, off)]


def test_joins_that_leave_fewer_groups_than_folds_are_refused_naming_them(params):
    fields = distinct_images(3)
    images = [view(f) for f in fields] + [near_copies(fields[0])["flipped"], near_copies(fields[1])["turned"]]
    samples = _samples(images, ["s1", "s2", "s3", "s4", "s5"])
    with pytest.raises(ValueError, match=r"5-fold .* into 3: s1 \+ s4, s2 \+ s5\. Use fewer folds"):
        plan_repeats(samples, params)
