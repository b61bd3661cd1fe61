"""Split planning: which images each network of a cross-validation is fitted on, checkpointed on and tested on.

Grouped k-fold: every image of one source (a raw image and its rotated copies, or one tomogram slice) lands in
exactly one fold, so no specimen region is seen in training and test at once. Repeats are independent grouped
K-fold splits, each with its own seed; a fold's checkpoint is chosen on inner-validation groups taken from its
training side, so its test images choose nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import GroupKFold

from ncseg.config import Params

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


def plan_repeats(samples: list[Sample], params: Params) -> list[Split]:
    """The R grouped splits: repeat r uses `cv.seed(seed, r)` for everything random in it."""
    groups = [s.group for s in samples]
    seeds = [params.cv.seed(params.seed, r) for r in range(params.cv.repeats)]
    return [Split(r, seed, assign_folds(groups, params.cv.n_folds, seed)) for r, seed in enumerate(seeds)]


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
