"""Grouped k-fold: every image of one source (a raw image and its rotated copies, or one tomogram slice)
lands in exactly one fold, so no specimen region is seen in training and test at once."""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import GroupKFold


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
