"""Small, valid stage records for unit tests (the real ones come from a CV run), and inputs small enough to train a
network on in a unit test."""

from __future__ import annotations

import statistics
from types import ModuleType

import numpy as np
import pytest

from ncseg.config import Params, load_params
from ncseg.data.dataset import Sample
from ncseg.records import SCORE_KEYS, CVSummary, ModelCard, WeightFile

from .conftest import ROOT

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


def model_card(folds: list[WeightFile], repeats: int = 1) -> ModelCard:
    """A tiny unet4's card listing `folds` (what CV measured is made up)."""
    return ModelCard(
        name="unet4",
        spec={"kind": "unet4", "base_channels": 4, "dropout": 0.0, "padding": "same", "l2": 0.0, "weight_decay": 0.0},
        threshold=0.5,
        folds=tuple(folds),
        repeats=repeats,
        cv_jaccard_mean=0.9,
        cv_jaccard_std=0.01,
        normalization=("image",),
        intensity_window=None,
        tta="none",
        cv_run_id="run",
    )


def tiny_train_params(*extra: str) -> Params:
    """The project's params with crops, batches and tiles small enough to train a network in a unit test."""
    return load_params(
        ROOT / "params.yaml",
        ["train.crop_px=64", "train.batch_size=4", "inference.tile=128", "inference.context=16", *extra],
    )


def noise_samples(n: int = 2) -> list[Sample]:
    """n images of 96² uniform noise, one group each, masked where brighter than 0.5."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.uniform(0, 1, (1, 96, 96)).astype(np.float32)
        out.append(Sample(f"s{i}", f"g{i}", image[0], image, image[0] > 0.5, 0.5))
    return out


def fail_on_call(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, n: int, failure: type) -> None:
    """Make `module.name` raise `failure` on its n-th call (a Ctrl-C or a full disk midway through a write)."""
    real, calls = getattr(module, name), []

    def interrupted(*args: object) -> object:
        calls.append(args)
        if len(calls) == n:
            raise failure
        return real(*args)

    monkeypatch.setattr(module, name, interrupted)
