"""The GPU machine's cross-validation: where MLflow is missing, nothing is logged and the summary is the one
`ncseg train` writes."""

from __future__ import annotations

import importlib.util
import sys

import ncseg.tracking
from benchmarks.device_cv import untracked
from ncseg.training.cv import cross_validate

from ..training.conftest import study  # noqa: F401 - the tiny CV study, a fixture


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
