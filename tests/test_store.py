"""`ncseg store relocate` on a small real MLflow store, and the refusal to log into a copied project's old folder."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ncseg import tracking
from ncseg.config import Params
from ncseg.store import StoreError, db_path, recorded_root, relocate


def _make_store(root: Path, params: Params, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project store with one run holding one artifact, made the way the pipeline makes it; returns the run id."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.local_uri(root))
    tracking.setup(params, root)
    note = root / "note.txt"
    note.write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(note), "notes")
    return run.info.run_id


def _locations(root: Path) -> list[str]:
    with sqlite3.connect(db_path(root)) as db:
        rows = db.execute("SELECT artifact_location FROM experiments UNION ALL SELECT artifact_uri FROM runs")
        return [value for (value,) in rows]


@pytest.fixture
def moved(tmp_path: Path, params: Params, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    run_id = _make_store(old, params, monkeypatch)
    shutil.move(old, new)
    return old, new, run_id


def test_relocate_points_every_location_at_the_new_folder(moved, monkeypatch):
    import mlflow

    old, new, run_id = moved
    assert recorded_root(new) == old
    done = relocate(new)
    assert (done.old_root, done.new_root) == (old, new)
    assert done.rewritten["experiments.artifact_location"] >= 1 and done.rewritten["runs.artifact_uri"] == 1
    assert not [loc for loc in _locations(new) if str(old) in loc]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.local_uri(new))
    client = mlflow.MlflowClient()
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]
    assert relocate(new).total == 0, "a second run finds nothing to rewrite"


def test_a_sibling_folder_sharing_the_prefix_is_left_alone(moved):
    old, new, _ = moved
    sibling = f"{old.as_uri()}-project/mlruns/artifacts"
    with sqlite3.connect(db_path(new)) as db:
        db.execute("UPDATE runs SET artifact_uri = ?", (sibling,))
    relocate(new, old)
    assert sibling in _locations(new)


def test_logging_into_a_moved_store_is_refused_until_relocated(moved, params, monkeypatch):
    _, new, _ = moved
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.local_uri(new))
    with pytest.raises(StoreError, match="ncseg store relocate"):
        tracking.setup(params, new)
    relocate(new)
    tracking.setup(params, new)


def test_no_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no MLflow store"):
        relocate(tmp_path)


def test_a_store_pointing_at_two_projects_asks_for_from(moved):
    _, new, _ = moved
    with sqlite3.connect(db_path(new)) as db:
        db.execute(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage) VALUES ('x', ?, 'active')",
            ("file:///elsewhere/mlruns/artifacts",),
        )
    with pytest.raises(StoreError, match="--from"):
        relocate(new)


def test_an_experiment_made_meanwhile_by_another_writer_is_used(tmp_path, params, monkeypatch):
    """Two trainings starting at once on a fresh store: both see no experiment, the later create must not fail."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.local_uri(tmp_path))
    tracking.setup(params, tmp_path)
    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda _name: None)
    tracking.setup(params, tmp_path)
