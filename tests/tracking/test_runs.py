import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from ncseg.config import load_params
from ncseg.tracking.runs import data_hash
from ncseg.tracking.store import project_root, tracking_uri

ROOT = Path(__file__).resolve().parents[2]


def test_dvc_experiment_copies_log_to_the_projects_store(tmp_path):
    temp_copy = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpk3x9"
    temp_copy.mkdir(parents=True)
    assert project_root(temp_copy) == tmp_path / "proj"
    assert project_root(tmp_path / "proj") == tmp_path / "proj"


def test_local_store_is_sqlite_under_mlruns_unless_the_environment_says_otherwise(params, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(params, tmp_path) == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    team = load_params(ROOT / "params.yaml", ["tracking.uri=http://127.0.0.1:5000"])
    assert tracking_uri(team, tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert tracking_uri(team, tmp_path) == "sqlite:////elsewhere/mlflow.db"


def test_runs_are_tagged_with_the_dvc_hash_of_the_raw_data():
    assert data_hash(ROOT).endswith(".dir") and len(data_hash(ROOT)) == 36
    assert data_hash(ROOT / "no-such-dir") == "unknown"


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["data", "--help"],
        ["train", "--help"],
        ["predict", "--help"],
        ["register", "--help"],
        ["serve", "--help"],
        ["evaluate", "--help"],
    ],
)
def test_every_command_has_help(command):
    from typer.testing import CliRunner

    from ncseg.cli import app

    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(scope="module")
def built_store(tmp_path_factory) -> Path:
    """A local store's database with its tables: MLflow takes ~5 s to build them, copying it takes nothing."""
    import mlflow

    from ncseg.tracking.store import STORE_DIR, local_uri

    root = tmp_path_factory.mktemp("built")
    mlflow.MlflowClient(local_uri(root)).search_experiments()
    return root / STORE_DIR / "mlflow.db"


@pytest.fixture
def store(built_store, tmp_path, monkeypatch) -> Path:
    """A project root at tmp_path whose local store is new (the Default experiment only), in use."""
    (tmp_path / "mlruns").mkdir()
    shutil.copy(built_store, tmp_path / "mlruns" / built_store.name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_the_experiment_describes_its_runs_in_the_mlflow_ui(params, store):
    import mlflow

    from ncseg.tracking.runs import setup

    setup(params, store)
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    assert "one parent run per model" in experiment.tags["mlflow.note.content"].lower()
    mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, "mlflow.note.content", "")
    setup(params, store)  # an experiment created by an older ncseg gets it too
    assert "parent run" in mlflow.get_experiment_by_name(params.tracking.experiment).tags["mlflow.note.content"]


SETUP_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
from ncseg.config import load_params
from ncseg.tracking.runs import setup
setup(load_params(Path(sys.argv[1])), Path(sys.argv[2]))
"""


def test_trainings_starting_together_on_a_new_local_store_all_get_it(tmp_path, monkeypatch):
    """Like `dvc queue start -j 2` on a fresh project: MLflow's table creation must not run twice at once."""
    import subprocess
    import sys

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", SETUP_IN_A_NEW_PROCESS, str(ROOT / "params.yaml"), str(tmp_path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    failures = [p.stderr.read()[-1500:] for p in starts if p.wait(timeout=120) != 0]
    assert not failures, failures[0]


def test_a_killed_trainings_runs_are_marked_killed_when_the_next_run_starts(params, store):
    """SIGKILL leaves its MLflow runs RUNNING for good. The next run in the experiment marks those whose process,
    on this machine, is gone; a run whose process lives, or that another machine started, is left alone."""
    import mlflow

    from ncseg.tracking.runs import KILLED_TAG, OWNER_HOST, OWNER_PID, parent_run, setup

    setup(params, store)
    killed = subprocess.Popen(["sleep", "60"])
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    client, here = mlflow.MlflowClient(), socket.gethostname()
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment).experiment_id
    owners = {"orphan": (here, killed.pid), "live": (here, os.getpid()), "elsewhere": ("another-host", killed.pid)}
    runs = {
        name: client.create_run(experiment, tags={OWNER_HOST: host, OWNER_PID: str(pid)}).info.run_id
        for name, (host, pid) in owners.items()
    }
    with parent_run("unet4", params, store, kind="cv") as run_id:
        own = client.get_run(run_id).data.tags
        assert (own[OWNER_HOST], own[OWNER_PID]) == (here, str(os.getpid()))
    status = {name: client.get_run(run).info.status for name, run in runs.items()}
    assert status == {"orphan": "KILLED", "live": "RUNNING", "elsewhere": "RUNNING"}
    why = client.get_run(runs["orphan"]).data.tags[KILLED_TAG]
    assert f"process {killed.pid} on {here} ended" in why
