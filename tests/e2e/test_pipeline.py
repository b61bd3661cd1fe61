"""The tiny-profile `dvc repro` leaves a clean DVC state and a browsable MLflow store."""

import json

import mlflow
import pytest
import yaml

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


def test_mlflow_holds_parent_and_child_runs_with_metrics_and_artifacts(client, tiny_project):
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    experiment = client.get_experiment_by_name("ncseg-e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_name: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert {"unet4", "classical-otsu", "comparison", "register"} <= set(parents)
    unet = parents["unet4"]
    assert unet.data.tags["git_commit"] and unet.data.tags["data_md5"] != "unknown"
    assert unet.data.params["train.epochs"] == str(params["train"]["epochs"]) and unet.data.params["cv.n_folds"] == "2"
    assert unet.data.params["models.unet4.base_channels"] == "16"
    assert not any(k.startswith("models.classical-otsu") for k in unet.data.params), "only its own model's params"
    assert {"test/jaccard_mean", "test/jaccard_std", "threshold", "test/object_f1_mean"} <= set(unet.data.metrics)
    assert "Rank 1 of 2" in unet.data.tags["mlflow.note.content"]
    (dataset,) = client.get_run(unet.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "augmented" and dataset.dataset.digest == unet.data.tags["data_md5"][:32]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == unet.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["fold-0", "fold-1"]
    for child in children:
        assert {"test/jaccard", "test/dice", "test/object_f1", "test/threshold", "test/diameter_error"} <= set(
            child.data.metrics
        )
        assert not [k for k in child.data.metrics if k.count("/") > 1], "a binary study logs no per-class scores"
        for curve in ("train/loss", "val/loss", "val/jaccard_study", "val/jaccard_tuned"):
            assert len(client.get_metric_history(child.info.run_id, curve)) >= 2, curve
        fold = child.info.run_name.split("-")[1]
        assert [a.path for a in client.list_artifacts(child.info.run_id, "weights")] == [f"weights/fold{fold}.pt"]
    artifacts = {a.path for a in client.list_artifacts(unet.info.run_id, "plots")}
    assert {"plots/threshold_sweep.csv", "plots/threshold_sweep.png", "plots/overlays"} <= artifacts
    assert {"plots/learning_curves.png", "plots/val_jaccard"} <= artifacts
    assert [a.path for a in client.list_artifacts(unet.info.run_id, "weights")] == ["weights/model.json"]
    overlays = client.list_artifacts(unet.info.run_id, "plots/overlays")
    assert len(overlays) == 22


def test_the_model_folder_is_whole_and_its_card_vouches_for_its_weights(tiny_project):
    from ncseg.records import ModelCard

    folder = tiny_project / "models" / "unet4"
    card = ModelCard.load(folder / "model.json")
    assert sorted(p.name for p in folder.iterdir()) == ["fold0.pt", "fold1.pt", "model.json"]
    card.verify(folder)
    assert not [p for p in (tiny_project / "models").iterdir() if ".staging." in p.name or ".previous." in p.name]


def test_learning_curves_stop_where_each_fold_stopped(tiny_project):
    import csv

    for fold in ("fold-0", "fold-1"):
        with (tiny_project / "plots" / "unet4" / "val_jaccard" / f"{fold}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(row["val_jaccard_tuned"] != "" for row in rows)
        assert [int(r["epoch"]) for r in rows] == list(range(len(rows)))
