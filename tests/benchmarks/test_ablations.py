"""Ablations: a variant's CV runs again when the study's params change, but its training minutes are those of the
call that trained its folds, not of a call that took them all from the fold cache."""

from __future__ import annotations

import pytest

from benchmarks import ablations
from ncseg.config import Params

from ..builders import cv_summary, tiny_train_params


def _variant(tmp_path) -> Params:
    out = tmp_path / "variant"
    folders = [f"paths.{key}={out}/{key}" for key in ("models", "metrics", "plots")]
    return tiny_train_params(*folders, f"paths.fold_cache={tmp_path}/fold-cache")


def _cv(trains: int):
    """A stand-in for `cross_validate` that finishes `trains` new folds in the fold cache and writes the summary."""

    def run(model: str, params: Params, root) -> None:
        for k in range(trains):
            fold = params.paths.fold_cache / model / "key" / f"r0-f{k}"
            fold.mkdir(parents=True)
            (fold / ablations.DONE).write_text("{}")
        cv_summary(model, "unet4", [0.8, 0.9]).save(params.paths.metrics / "cv" / f"{model}.json")

    return run


def test_a_cv_taken_whole_from_the_fold_cache_keeps_the_minutes_of_the_call_that_trained_it(tmp_path, monkeypatch):
    params = _variant(tmp_path)
    monkeypatch.setattr(ablations, "cross_validate", _cv(trains=2))
    ablations.result(params, "unet4")
    (params.paths.metrics / "train_minutes.txt").write_text("41.7\n")  # what that training took
    changed = params.model_copy(update={"seed": params.seed + 1})  # the study file changed: the CV runs again
    monkeypatch.setattr(ablations, "cross_validate", _cv(trains=0))
    assert ablations.result(changed, "unet4")[1] == 41.7


def test_a_cv_that_trains_a_fold_records_its_own_minutes(tmp_path, monkeypatch):
    params = _variant(tmp_path)
    params.paths.metrics.mkdir(parents=True)
    (params.paths.metrics / "train_minutes.txt").write_text("41.7\n")
    monkeypatch.setattr(ablations, "cross_validate", _cv(trains=1))
    assert ablations.result(params, "unet4")[1] == pytest.approx(0.0, abs=0.05)
