"""The GPU machine's cross-validation: where MLflow is missing nothing is logged and the summary is the one
`ncseg train` writes; a run's record lands beside its summary, and a call that continues an earlier call's folds
adds itself to that record."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import ncseg.tracking
from benchmarks.device_cv import CACHED, DEVICE, train, untracked
from ncseg.config import load_params
from ncseg.data.rotations import augment
from ncseg.training.cv import cross_validate

from ..conftest import ROOT
from ..training.conftest import study, tiny_study  # noqa: F401 - the tiny CV study, a fixture


def test_without_mlflow_the_cv_logs_nothing_and_scores_as_a_tracked_one(study, monkeypatch, tmp_path):  # noqa: F811
    params, _, _ = study
    tracked = cross_validate("unet4", params(2), tmp_path)
    monkeypatch.setitem(sys.modules, "ncseg.tracking.runs", sys.modules["ncseg.tracking.runs"])  # restored after
    monkeypatch.setattr(ncseg.tracking, "runs", ncseg.tracking.runs)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    untracked()
    store = tmp_path / "untracked.db"
    bare = cross_validate("unet4", params(2, f"tracking.uri=sqlite:///{store}"), tmp_path)
    assert not store.exists(), "nothing reached MLflow"
    assert bare.jaccard_per_fold == tracked.jaccard_per_fold and bare.threshold == tracked.threshold


def test_a_run_records_each_fold_beside_its_summary_and_a_second_call_continues_that_record(small_raw, tmp_path):
    work = tmp_path / "work"
    overrides = [*tiny_study(small_raw, work, 2, tmp_path), f"paths.fold_cache={work}/folds"]
    params = load_params(ROOT / "params.yaml", overrides)
    augment(params.paths.raw, params.paths.augmented, params.augment, params.seed)
    args = argparse.Namespace(
        params=ROOT / "params.yaml", model="unet4", overrides=overrides, processes=1, minutes=60.0
    )
    metrics = params.paths.metrics
    for out in (None, metrics):  # the second: copying the record onto itself
        train(argparse.Namespace(**vars(args), out=out))
    record = json.loads((metrics / DEVICE).read_text())
    first, second = record["calls"]
    assert sorted(first["fold_seconds"]) == ["r0-f0", "r0-f1"] and CACHED not in first["fold_seconds"].values()
    assert set(second["fold_seconds"].values()) == {CACHED}, "the second call found every fold cached"
    assert first["complete_repeats"] == second["complete_repeats"] == 1 and "scored_wall_s" in second
    assert (metrics / "cv" / "unet4.json").is_file() and not (metrics / "unet4.json").exists()
