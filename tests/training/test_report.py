import shutil

import pytest

from ncseg.config import load_params
from ncseg.records import Summary
from ncseg.tracking import runs, store
from ncseg.tracking.store import StoreError
from ncseg.training.report import best_model, evaluate, paired_gains, paired_table

from ..builders import cv_summary
from ..conftest import ROOT


def test_gains_over_the_baseline_are_paired_fold_by_fold_with_an_interval():
    results = {
        "unet4": cv_summary("unet4", "unet4", [0.88, 0.90, 0.89]),
        "otsu": cv_summary("otsu", "classical", [0.89, 0.80, 0.88]),
    }
    (row,) = paired_gains(results)
    assert (row.model, row.baseline, row.folds_better, row.folds) == ("unet4", "otsu", 2, 3)
    assert row.gain_mean == pytest.approx((-0.01 + 0.10 + 0.01) / 3)
    # t(0.975, 2) = 4.303, and the folds share training images: the corrected resampled interval is
    # mean ± 4.303 · sd · √(1/3 + 1/(3-1)), wider than the naive sd/√3 one; it spans 0 -> not beyond noise
    assert row.ci_high - row.gain_mean == pytest.approx(4.303 * row.gain_std * (1 / 3 + 1 / 2) ** 0.5, rel=1e-3)
    assert not row.beyond_noise
    assert "| unet4 | otsu | +0.033 ± 0.059 | [-0.197, +0.263] | 2 of 3 | no |" in paired_table([row])
    assert best_model(results) == "unet4", "the classical baseline is never the model to register"


def test_every_network_is_compared_with_the_networks_below_it_and_every_baseline():
    results = {
        "smp": cv_summary("smp", "smp", [0.97, 0.96, 0.97, 0.98]),
        "otsu": cv_summary("otsu", "classical", [0.92, 0.93, 0.92, 0.93]),
        "unet4": cv_summary("unet4", "unet4", [0.90, 0.91, 0.90, 0.91]),
    }
    rows = paired_gains(results)
    assert {(r.model, r.baseline) for r in rows} == {("smp", "otsu"), ("smp", "unet4"), ("unet4", "otsu")}
    smp_vs_otsu = next(r for r in rows if (r.model, r.baseline) == ("smp", "otsu"))
    assert smp_vs_otsu.beyond_noise and smp_vs_otsu.ci_low > 0
    summary = Summary(best="smp", models=results, paired_gains=tuple(rows))
    assert [g.baseline for g in summary.baseline_gains("smp")] == ["otsu"], "the gate compares with baselines only"


def test_models_scored_on_different_folds_are_refused_not_paired():
    from ncseg.records import RecordError

    results = {
        "unet4": cv_summary("unet4", "unet4", [0.9, 0.91, 0.92]),
        "otsu": cv_summary("otsu", "classical", [0.88, 0.89]),
    }
    with pytest.raises(RecordError, match="were not scored on the same folds"):
        paired_gains(results)


def test_evaluate_in_a_copied_project_writes_nothing_before_refusing(tmp_path, params, monkeypatch):
    """A copy whose store still points at the original: refused before metrics/summary.* are (re)written, so they
    keep matching the comparison run in the store."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(old))
    runs.setup(params, old)
    shutil.copytree(old, new)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(new))
    copied = load_params(ROOT / "params.yaml", [f"paths.metrics={new / 'metrics'}"])
    (new / "metrics" / "cv").mkdir(parents=True)
    kinds = {name: spec.kind for name, spec in copied.models.items()}
    for name, kind in kinds.items():
        result = cv_summary(name, kind, [0.90, 0.91, 0.92])
        study = {"jaccard_at_study_threshold_mean": 0.9, "jaccard_at_study_threshold_std": 0.01}
        result.model_copy(update=study if kind != "classical" else {}).save(new / "metrics" / "cv" / f"{name}.json")
    with pytest.raises(StoreError, match="ncseg store relocate"):
        evaluate(copied, new)
    assert sorted(p.name for p in (new / "metrics").iterdir()) == ["cv"]
