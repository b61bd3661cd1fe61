"""The tiny-profile `dvc repro` leaves a clean DVC state and a browsable MLflow store."""

import json

import mlflow
import pytest

from .conftest import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tiny_project):
    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    return mlflow.MlflowClient()


def test_dvc_is_up_to_date_after_repro(tiny_project):
    out = run(["dvc", "status"], tiny_project).stdout
    assert "up to date" in out, out


def test_metrics_cover_every_model_on_the_same_folds(tiny_project):
    summary = json.loads((tiny_project / "metrics" / "summary.json").read_text())
    assert set(summary["models"]) == {"unet4", "classical-otsu"}
    for result in summary["models"].values():
        assert result["n_folds"] == 2 and result["n_images"] == 22
        assert 0.0 <= result["jaccard_mean"] <= 1.0
    assert summary["models"]["unet4"]["jaccard_mean"] > 0.7
    assert summary["best"] == "unet4"


def test_mlflow_holds_parent_and_child_runs_with_metrics_and_artifacts(client):
    experiment = client.get_experiment_by_name("ncseg-e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_name: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert {"unet4", "classical-otsu", "comparison", "register"} <= set(parents)
    unet = parents["unet4"]
    assert unet.data.tags["git_commit"] and unet.data.tags["data_md5"] != "unknown"
    assert unet.data.params["train.epochs"] == "10" and unet.data.params["cv.n_folds"] == "2"
    assert {"cv_jaccard_mean", "cv_jaccard_std", "cv_threshold", "cv_object_f1_mean"} <= set(unet.data.metrics)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == unet.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["fold-0", "fold-1"]
    for child in children:
        assert {"jaccard", "dice", "object_f1", "threshold"} <= set(child.data.metrics)
        assert len(client.get_metric_history(child.info.run_id, "val_jaccard_best")) >= 2
        fold = child.info.run_name.split("-")[1]
        assert [a.path for a in client.list_artifacts(child.info.run_id, "weights")] == [f"weights/fold{fold}.pt"]
    artifacts = {a.path for a in client.list_artifacts(unet.info.run_id, "plots")}
    assert {"plots/threshold_sweep.csv", "plots/threshold_sweep.png", "plots/overlays"} <= artifacts
    assert [a.path for a in client.list_artifacts(unet.info.run_id, "weights")] == ["weights/model.json"]
    overlays = client.list_artifacts(unet.info.run_id, "plots/overlays")
    assert len(overlays) == 22
