from pathlib import Path

import pytest

from ncseg.config import load_params
from ncseg.tracking import data_hash, project_root, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_experiment_describes_its_runs_in_the_mlflow_ui(params, tmp_path, monkeypatch):
    import mlflow

    from ncseg.tracking import setup

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup(params, tmp_path)
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    assert "one parent run per model" in experiment.tags["mlflow.note.content"].lower()
    mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, "mlflow.note.content", "")
    setup(params, tmp_path)  # an experiment created by an older ncseg gets it too
    assert "parent run" in mlflow.get_experiment_by_name(params.tracking.experiment).tags["mlflow.note.content"]


SETUP_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
from ncseg.config import load_params
from ncseg.tracking import setup
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
