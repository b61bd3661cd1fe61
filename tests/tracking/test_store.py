"""`ncseg store relocate` on a small real MLflow store, and the refusal to log into a copied project's old folder."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ncseg.config import Params
from ncseg.tracking import runs, store
from ncseg.tracking.store import StoreError, db_path, recorded_root, relocate


def _make_store(root: Path, params: Params, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project store with one run holding one artifact, made the way the pipeline makes it; returns the run id."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(root))
    runs.setup(params, root)
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
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(new))
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
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(new))
    with pytest.raises(StoreError, match="ncseg store relocate"):
        runs.setup(params, new)
    relocate(new)
    runs.setup(params, new)


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

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(tmp_path))
    runs.setup(params, tmp_path)
    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda _name: None)
    runs.setup(params, tmp_path)


@pytest.fixture
def corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose mlflow.db is no database: a half-copied or overwritten file."""
    db_path(tmp_path).parent.mkdir()
    db_path(tmp_path).write_bytes(b"SQLite format 2\x00" + bytes(4080))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.local_uri(tmp_path))
    return tmp_path


def test_a_corrupt_store_is_named_by_every_command_that_opens_it(corrupt, params):
    """train, evaluate and register open the store in runs.setup, predict and serve in the model lookup,
    `store relocate` itself: each says which file is broken and what to do, not SQLAlchemy's traceback."""
    from ncseg.registry.lookup import ModelLookupError, check_model_uri

    expected = rf"{db_path(corrupt)}: not a readable SQLite database \(file is not a database\); restore it"
    with pytest.raises(StoreError, match=expected):
        runs.setup(params, corrupt)
    with pytest.raises(ModelLookupError, match=expected):
        check_model_uri("models:/ncseg-nc-segmenter@champion", store.local_uri(corrupt))
    with pytest.raises(StoreError, match=expected):
        relocate(corrupt)


def test_store_relocate_on_a_corrupt_store_exits_with_one_line(corrupt, monkeypatch):
    from typer.testing import CliRunner

    from ncseg.cli import app

    monkeypatch.chdir(corrupt)
    result = CliRunner().invoke(app, ["store", "relocate"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"error: {db_path(corrupt)}: not a readable SQLite database")


def test_relocating_from_a_folder_the_store_does_not_point_at_is_refused(moved):
    """--from an ancestor of the old folder matched every location and rewrote /old/x as /new/old/x."""
    old, new, _ = moved
    before = _locations(new)
    with pytest.raises(StoreError, match=rf"--from {old.parent}: the store's experiments point at {old}, not at it"):
        relocate(new, old.parent)
    assert _locations(new) == before
    relocate(new, old)
    assert not [loc for loc in _locations(new) if str(old) in loc]
