"""The correction loop as a microscopist runs it, on a copy of the tiny study: predict new images with the champion,
export ImageJ ROIs, correct them (one particle deleted, one redrawn), `ncseg data add` them as one specimen group,
`dvc repro`, and the registry holds a new version trained on them."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from roifile import ImagejRoi, roiread, roiwrite

from ncseg.data.layout import read_manifest
from ncseg.interop.imagej import rois_to_labels
from ncseg.io.images import read_mask

from .conftest import run

pytestmark = pytest.mark.slow
MODEL = "ncseg-nc-segmenter"
NEW = ("field_a", "field_b")


def _copy_study(tiny_project: Path, target: Path) -> Path:
    """The tiny study with its data, models, DVC state and MLflow store, so retraining leaves the study the other
    e2e tests read as it was. Its runs go to an experiment of their own, whose artifacts stay inside the copy (an
    experiment's artifact folder is an absolute path); DVC's lock and temp files stay behind."""
    shutil.copytree(tiny_project, target, ignore=lambda folder, _: ["tmp"] if Path(folder).name == ".dvc" else [])
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["tracking"]["experiment"] = "ncseg-e2e-loop"
    params["train"]["epochs"] = 3  # the loop is under test, not the retrained model's quality: a short retraining
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def _correct(rois: Path, corrected: Path) -> tuple[str, str]:
    """What a microscopist does in Fiji's ROI Manager: delete a false particle, redraw another as a rectangle."""
    kept = roiread(rois)
    deleted, redrawn = kept.pop(0), kept[0]
    x, y = redrawn.coordinates()[:, 0], redrawn.coordinates()[:, 1]
    box = np.array([[x.min(), y.min()], [x.max(), y.min()], [x.max(), y.max()], [x.min(), y.max()]], np.float32)
    kept[0] = ImagejRoi.frompoints(box, name=redrawn.name)
    roiwrite(corrected, kept)
    return deleted.name, redrawn.name


@pytest.fixture(scope="module")
def loop(tiny_project, tmp_path_factory):
    work = tmp_path_factory.mktemp("loop")
    project = _copy_study(tiny_project, work / "study")
    incoming = work / "incoming"
    run(["ncseg", "data", "synth", "--out", str(incoming), "-S", "seed=77", "-S", "data.synth.n_images=2"], project)
    for old, new in zip(("synth_00", "synth_01"), NEW, strict=True):
        (incoming / "images" / f"{old}.tif").rename(incoming / "images" / f"{new}.tif")
    predictions = work / "predictions"
    run(
        [
            "ncseg",
            "predict",
            f"models:/{MODEL}@champion",
            str(incoming / "images"),
            "--out",
            str(predictions),
            "--rois",
        ],
        project,
    )
    corrected = work / "corrected"
    corrected.mkdir()
    edits = {name: _correct(predictions / "rois" / f"{name}.zip", corrected / f"{name}.zip") for name in NEW}
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    added = run(["ncseg", "data", "add", str(incoming / "images"), str(corrected), "--group", "grid-3"], project)
    repro = run(["dvc", "repro"], project)
    return project, corrected, edits, data_md5, added, repro


def test_the_corrected_rois_are_the_new_masks(loop):
    project, corrected, edits, _, added, _ = loop
    assert "added 2 image/mask pairs" in " ".join(added.stderr.split())
    for name, (deleted, redrawn) in edits.items():
        rois = roiread(corrected / f"{name}.zip")
        mask = read_mask(project / "data" / "raw" / "masks" / f"{name}.tif")
        np.testing.assert_array_equal(mask, rois_to_labels(rois, mask.shape) > 0)
        assert deleted not in [r.name for r in rois] and redrawn in [r.name for r in rois]


def test_repro_recorded_the_new_data_and_kept_the_group_in_one_piece(loop):
    project, _, _, data_md5, _, _ = loop
    assert yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"] != data_md5, "data.dvc updated"
    groups = {e.name: e.group for e in read_manifest(project / "data" / "augmented")}
    assert all(groups[name] == "grid-3" for name in NEW)
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    assert summary["models"]["unet4"]["n_images"] == 24  # 12 + 2 raw, 10 rotated copies
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_retraining_registered_a_new_version(loop):
    project, *_ = loop
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    assert versions[1].tags["cv_run_id"] != versions[0].tags["cv_run_id"]
    registry = json.loads((project / "metrics" / "registry.json").read_text())
    assert str(registry["version"]) == "2", registry
