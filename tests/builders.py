"""Small, valid stage records for unit tests (the real ones come from a CV run)."""

from __future__ import annotations

import statistics
from types import ModuleType

import pytest

from ncseg.records import SCORE_KEYS, CVSummary

# Request params the served model must refuse as a client error (HTTP 400): what MLflow passes through from JSON
# (null, NaN), wrong types, and values out of range. The first key of each is the one the message must name.
BAD_SERVING_PARAMS = [
    {"threshold": None},
    {"threshold": "0.5"},
    {"threshold": float("nan")},
    {"threshold": 0.0},
    {"threshold": 1.0},
    {"threshold": True},
    {"output": None},
    {"output": "labels"},
    {"output": ["mask"]},
    {"pixel_size_nm": -1.0},
    {"pixel_size_nm": float("inf")},
    {"pixel_size_nm": "0.5"},
]


def cv_summary(model: str, kind: str, per_fold: list[float]) -> CVSummary:
    mean, std = statistics.mean(per_fold), statistics.stdev(per_fold)
    scores = {f"{k}_{stat}": value for k in SCORE_KEYS for stat, value in (("mean", mean), ("std", std))}
    network = kind != "classical"
    return CVSummary(
        model=model,
        kind=kind,
        n_folds=len(per_fold),
        n_images=2 * len(per_fold),
        threshold=0.5 if network else None,
        study_threshold=0.75 if network else None,
        fold_thresholds=(0.5,) * len(per_fold) if network else None,
        jaccard_per_fold=tuple(per_fold),
        intensity_window=None,
        **scores,
    )


def fail_on_call(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, n: int, failure: type) -> None:
    """Make `module.name` raise `failure` on its n-th call (a Ctrl-C or a full disk midway through a write)."""
    real, calls = getattr(module, name), []

    def interrupted(*args: object) -> object:
        calls.append(args)
        if len(calls) == n:
            raise failure
        return real(*args)

    monkeypatch.setattr(module, name, interrupted)
