"""Split planning: which images each network of a cross-validation is fitted on, checkpointed on and tested on.

Grouped k-fold: every image of one source (a raw image and its rotated copies, or one tomogram slice) lands in
exactly one fold, so no specimen region is seen in training and test at once. Groups that near-duplicate images
link (neighbouring slices filed as separate groups; ncseg.data.leaks) are joined first, so no near-copy of a test
image is on the training side either. Repeats are independent grouped K-fold splits, each with its own seed; a
fold's checkpoint is chosen on inner-validation groups taken from its training side, so its test images choose
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import GroupKFold

from ncseg.config import Params
from ncseg.data.groups import first_few
from ncseg.data.leaks import LeakFreeGroups, leak_free_groups

if TYPE_CHECKING:
    from ncseg.data.dataset import Sample


def assign_folds(groups: list[str], n_folds: int, seed: int) -> list[int]:
    """Fold index per sample; folds balanced by sample count, group order shuffled by the seed."""
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise ValueError(f"{n_folds}-fold cross-validation needs at least {n_folds} groups, the data has {n_groups}")
    folds = [-1] * len(groups)
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), groups=groups)):
        for i in test:
            folds[i] = k
    return folds


def inner_validation_groups(train_groups: list[str], fraction: float, seed: int) -> set[str]:
    """The training-side groups held out for early stopping (at least one, and never all)."""
    unique = sorted(set(train_groups))
    if len(unique) < 2:
        raise ValueError("a fold needs at least two training groups to hold one out for early stopping")
    n = min(len(unique) - 1, max(1, math.ceil(fraction * len(unique))))
    return set(np.random.default_rng(seed).choice(unique, size=n, replace=False).tolist())


@dataclass(frozen=True)
class Split:
    """One repeat's grouped K-fold split; its seed drives everything random in the repeat (split, inner
    validation, initialisation, crops)."""

    index: int  # the repeat
    seed: int
    folds: list[int]  # fold per sample

    def test(self, k: int) -> list[int]:
        """Fold k's test images (sample indices)."""
        return [i for i, f in enumerate(self.folds) if f == k]


def leak_free(samples: list[Sample], threshold: float | None) -> tuple[list[Sample], LeakFreeGroups]:
    """The samples with their groups joined wherever near-duplicate images link them, and what was joined: what
    every split of the CV, inner validation included, is then planned on."""
    found = leak_free_groups([s.raw for s in samples], [s.group for s in samples], threshold)
    return [replace(s, group=g) for s, g in zip(samples, found.groups, strict=True)], found


def plan_repeats(samples: list[Sample], params: Params, groups: LeakFreeGroups | None = None) -> list[Split]:
    """The R grouped splits on the leak-free groups (`groups`, as `leak_free` found them for these samples; found
    here when not given): repeat r uses `cv.seed(seed, r)` for everything random in it."""
    groups = groups or leak_free(samples, params.cv.leak_threshold)[1]
    _enough_groups(groups, params.cv.n_folds)
    seeds = [params.cv.seed(params.seed, r) for r in range(params.cv.repeats)]
    return [Split(r, seed, assign_folds(list(groups.groups), params.cv.n_folds, seed)) for r, seed in enumerate(seeds)]


def _enough_groups(found: LeakFreeGroups, n_folds: int) -> None:
    """Say which joins left too few groups (assign_folds would only count them)."""
    n = len(set(found.groups))
    if found.joined and n < n_folds:
        joined = first_few([" + ".join(j) for j in found.joined])
        raise ValueError(
            f"{n_folds}-fold cross-validation needs at least {n_folds} groups, but near-duplicate images (similarity "
            f">= cv.leak_threshold {found.threshold}) join the data's groups into {n}: {joined}. Use fewer folds, "
            "or add images of other specimen regions (cv.leak_threshold: null splits near-copies apart: leaky)"
        )


def fit_and_validation(
    samples: list[Sample], folds: list[int], k: int, fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], set[str]]:
    """Fold k's training side split by group into the images a network is fitted on and the inner-validation
    images its checkpoint is chosen on; fold k's test images are in neither."""
    train_idx = [i for i, f in enumerate(folds) if f != k]
    inner = inner_validation_groups([samples[i].group for i in train_idx], fraction, seed + k)
    fit = [samples[i] for i in train_idx if samples[i].group not in inner]
    val = [samples[i] for i in train_idx if samples[i].group in inner]
    return fit, val, inner


def child_name(repeat: int, fold: int, repeats: int) -> str:
    """One (repeat, fold)'s name in MLflow and in the per-fold plot files: plain `fold-k` without repeats."""
    return f"fold-{fold}" if repeats == 1 else f"repeat-{repeat}-fold-{fold}"
