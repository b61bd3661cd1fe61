"""A tiny-profile project folder, copied and then moved: after `ncseg store relocate` its own store serves the
champion and lists artifacts from the new place, and nothing in it points at a folder it used to be in."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ncseg.tracking.store import LOCATION_COLUMNS, db_path, local_uri

from .conftest import project_env, run

pytestmark = pytest.mark.slow
MODEL = "models:/ncseg-nc-segmenter@champion"


def _pointing_at(project: Path, folder: Path) -> list[str]:
    """Every artifact location in the project's store that is under `folder`."""
    with sqlite3.connect(db_path(project)) as db:
        values = [v for t, c in LOCATION_COLUMNS for (v,) in db.execute(f"SELECT {c} FROM {t}")]
    return [v for v in values if v and (str(folder) + "/" in v or v.endswith(str(folder)))]


def test_a_moved_project_keeps_a_working_store(tiny_project, tmp_path):
    copy, moved = tmp_path / "copy", tmp_path / "elsewhere" / "moved"
    shutil.copytree(tiny_project, copy, symlinks=True)
    assert _pointing_at(copy, tiny_project), "MLflow recorded the original folder"
    refused = subprocess.run(["ncseg", "register"], cwd=copy, env=project_env(copy), capture_output=True, text=True)
    assert refused.returncode == 1, "a copy must not log into the original's artifact folder"
    assert "ncseg store relocate" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr[-2000:]

    run(["ncseg", "store", "relocate"], copy)
    moved.parent.mkdir()
    copy.rename(moved)  # a real move: the folder the store was relocated to is gone
    done = run(["ncseg", "store", "relocate"], moved)
    assert str(copy) in done.stderr and str(moved) in done.stderr, done.stderr
    assert not _pointing_at(moved, tiny_project) and not _pointing_at(moved, copy)

    out = tmp_path / "predictions"
    image = moved / "data" / "raw" / "images" / "synth_02.tif"
    run(["ncseg", "predict", MODEL, str(image), "--out", str(out)], moved)
    assert (out / "masks" / "synth_02.tif").is_file()
    client = MlflowClient(local_uri(moved))
    champion = client.get_model_version_by_alias("ncseg-nc-segmenter", "champion")
    stored = client.get_model_version_download_uri(champion.name, champion.version)
    assert stored.startswith(moved.as_uri()), stored
    experiment = client.get_experiment_by_name("ncseg-e2e").experiment_id
    cv_run = client.search_runs([experiment], "attributes.run_name = 'unet4'", max_results=1)[0]
    assert [a.path for a in client.list_artifacts(cv_run.info.run_id, "weights")] == ["weights/model.json"]
    assert Path(client.download_artifacts(cv_run.info.run_id, "weights/model.json", str(tmp_path))).is_file()
