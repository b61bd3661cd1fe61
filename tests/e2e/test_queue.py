"""Parallel experiments the way docs/lab.md shows them: a `-S` sweep queued with `dvc exp run --queue`, run two
at a time by `dvc queue start -j 2`. Queued experiments run in temporary copies under .dvc/tmp/exps; their numbers
must show in `dvc exp show` and their MLflow runs in the project's own store, not in a copy's (nobody would find
them there, and the copy is deleted afterwards)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ncseg.tracking.store import local_uri

from .conftest import new_tiny_project, project_env, run

pytestmark = pytest.mark.slow
LRS = ("0.001", "0.003")
FAST = [  # seconds per experiment: what is tested is where the results go, not how good they are
    "train.epochs=2",
    "train.steps_per_epoch=2",
    "models={unet4: {kind: unet4, base_channels: 4, dropout: 0.0, padding: same, l2: 0.0, weight_decay: 0.0},"
    " classical-otsu: {kind: classical, sigma_nm: 1.0, min_area_nm2: 12.0}}",
]


def _env(project: Path) -> dict[str, str]:
    """No MLFLOW_TRACKING_URI: the copies must find the project's store by themselves (ncseg.tracking)."""
    return {k: v for k, v in project_env(project).items() if k != "MLFLOW_TRACKING_URI"}


def _wait_for_queue(project: Path, env: dict[str, str], timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project, env=env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    raise AssertionError(f"the queue did not finish in {timeout_s} s:\n{status}")


def _stop_workers(project: Path, env: dict[str, str]) -> None:
    """Ask the workers to stop, then end any that did not: a second worker may stay idle after the first one,
    which cleans up the queue's broker, has gone (seen with DVC 3.67)."""
    subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=project, env=env, capture_output=True, timeout=120)
    for pid_file in (project / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().split()[0])
            if b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a process that took its pid
                os.kill(pid, signal.SIGTERM)


def _failed_logs(project: Path, env: dict[str, str], status: str) -> str:
    tasks = [line.split()[0] for line in status.splitlines() if "Failed" in line]
    return "".join(run(["dvc", "queue", "logs", task], project, env=env).stdout[-3000:] for task in tasks)


def test_a_queued_sweep_runs_two_at_a_time_and_reports_to_the_project(tmp_path):
    project = new_tiny_project(tmp_path / "study", FAST)
    env = _env(project)
    run(["git", "add", "-A"], project, env=env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny study"], project, env=env)
    run(["dvc", "exp", "run", "--queue", "-S", f"train.lr={','.join(LRS)}"], project, env=env)
    try:
        # The workers are daemons that keep the starter's stdout/stderr: never capture them (nothing would end)
        subprocess.run(
            ["dvc", "queue", "start", "-j", "2"],
            cwd=project,
            env=env,
            check=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        status = _wait_for_queue(project, env)
    finally:
        _stop_workers(project, env)
    assert "Failed" not in status, status + _failed_logs(project, env, status)

    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env=env).stdout)
    experiments = [e for commit in shown for exp in (commit.get("experiments") or []) for e in exp["revs"]]
    done = {}
    for e in experiments:
        data = e["data"]
        lr = data["params"]["params.yaml"]["data"]["train"]["lr"]
        done[str(lr)] = data["metrics"]["metrics/cv/unet4.json"]["data"]["jaccard_mean"]
    assert sorted(done) == sorted(str(float(lr)) for lr in LRS), experiments
    assert all(0.0 <= j <= 1.0 for j in done.values())

    client = MlflowClient(local_uri(project))
    experiment = client.get_experiment_by_name("ncseg-e2e")
    parents = client.search_runs([experiment.experiment_id], "attributes.run_name = 'unet4'")
    logged = {r.data.params["train.lr"]: r.data.metrics["test/jaccard_mean"] for r in parents}
    assert {str(float(k)) for k in logged} == set(done), logged
    for lr, jaccard in logged.items():  # the numbers DVC shows are the runs MLflow has
        assert jaccard == pytest.approx(done[str(float(lr))])
    store = (project / "mlruns" / "artifacts").as_uri()
    assert all(r.info.artifact_uri.startswith(store) for r in parents), [r.info.artifact_uri for r in parents]
