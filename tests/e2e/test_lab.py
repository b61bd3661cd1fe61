"""A lab's shared setup, for real on loopback: PostgreSQL + `rclone serve s3` + `mlflow server` proxying artifacts
(docs/lab.md). One tiny `dvc repro` logs to the server; its runs must be in PostgreSQL and its artifacts in the
bucket, the champion must be servable and usable by `ncseg predict` from the server, the data must round-trip
through an S3 DVC remote into a fresh clone, and two concurrent writers must lose nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ncseg.io.images import read_mask
from ncseg.metrics import jaccard
from ncseg.serving.protocol import decode_answer
from ncseg.serving.server import local_server

from .conftest import new_tiny_project, project_env, run
from .lab_servers import ACCESS_KEY, BUCKET, SECRET_KEY, Postgres, S3Store, initdb, mlflow_server, postgres, s3_store

pytestmark = pytest.mark.slow
MODEL = "models:/ncseg-nc-segmenter@champion"
EXPERIMENT = "ncseg-lab"
# Tinier than the shared tiny profile (one network, few steps): this test is about where things land, not how well
# the network learns. Without the classical baseline, register.min_jaccard is the champion gate.
LAB_PROFILE = [
    "train.epochs=4",
    "train.steps_per_epoch=4",
    "train.patience=2",
    "models={unet4: {kind: unet4, base_channels: 16, dropout: 0.1, padding: same, l2: 0.0, weight_decay: 0.0}}",
    "register.min_jaccard=0.5",
    f"tracking.experiment={EXPERIMENT}",
]


@dataclass(frozen=True)
class Lab:
    db: Postgres
    s3: S3Store
    url: str  # the MLflow server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if initdb() is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)")
    work = tmp_path_factory.mktemp("lab")
    with postgres() as db, s3_store(work) as s3, mlflow_server(db, s3, work) as url:
        yield Lab(db, s3, url)


def client_env(project: Path, url: str) -> dict[str, str]:
    """A lab member's shell: the server as tracking URI and no S3 credentials at all (the server proxies
    artifacts)."""
    env = {k: v for k, v in project_env(project).items() if not k.startswith(("AWS_", "MLFLOW_S3_"))}
    return env | {"MLFLOW_TRACKING_URI": url}


@pytest.fixture(scope="module")
def lab_project(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = new_tiny_project(tmp_path_factory.mktemp("lab-project"), LAB_PROFILE)
    run(["dvc", "repro"], project, env=client_env(project, lab.url))
    return project


def _query(db: Postgres, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(db.dsn) as connection:
        return connection.execute(sql).fetchall()


def _s3_keys(s3: S3Store, prefix: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_runs_and_the_registry_are_in_postgresql(lab, lab_project):
    runs = _query(
        lab.db,
        "SELECT r.name, r.status FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
        f"WHERE e.name = '{EXPERIMENT}'",
    )
    names = sorted(name for name, _ in runs)
    assert {"unet4", "comparison", "register"} <= set(names), names
    assert sum(name.startswith("fold") for name in names) >= 2, f"a child run per fold: {names}"
    assert {status for _, status in runs} == {"FINISHED"}, runs
    aliases = _query(lab.db, "SELECT name, alias FROM registered_model_aliases")
    assert ("ncseg-nc-segmenter", "champion") in aliases
    assert _query(lab.db, "SELECT count(*) FROM metrics")[0][0] > 0


def test_artifacts_are_in_the_bucket_through_the_server(lab, lab_project):
    (location,) = _query(lab.db, f"SELECT artifact_location FROM experiments WHERE name = '{EXPERIMENT}'")[0]
    assert location.startswith("mlflow-artifacts:"), f"proxied, so clients need no S3 credentials: {location}"
    keys = _s3_keys(lab.s3, "mlartifacts/")
    assert any(k.endswith("/weights/model.json") for k in keys), keys[:20]
    assert any(k.endswith("/MLmodel") for k in keys), "the registered pyfunc model"
    assert any(k.endswith("/plots/folds.csv") for k in keys), keys[:20]


def test_the_champion_is_served_from_the_server(lab, lab_project, tmp_path):
    image = lab_project / "data" / "raw" / "images" / "synth_05.tif"
    truth = read_mask(lab_project / "data" / "raw" / "masks" / "synth_05.tif")
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(image.read_bytes()).decode()]]}}
    env = client_env(lab_project, lab.url)
    with (tmp_path / "serve.log").open("w") as log, local_server(MODEL, env, lab_project, log) as url:
        request = urllib.request.Request(
            f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            (mask,) = decode_answer(json.loads(response.read())["predictions"])
    assert mask.shape == truth.shape
    assert jaccard(mask > 0, truth) > 0.5


def test_ncseg_predict_loads_the_champion_from_the_server(lab, lab_project, tmp_path):
    image = lab_project / "data" / "raw" / "images" / "synth_02.tif"
    run(
        ["ncseg", "predict", MODEL, str(image), "--out", str(tmp_path)],
        lab_project,
        env=client_env(lab_project, lab.url),
    )
    assert (tmp_path / "masks" / "synth_02.tif").is_file()


def _outputs(project: Path) -> list[Path]:
    """What DVC tracks: data.dvc's folder and every stage's outs in dvc.lock (the metrics too, which Git carries)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    raw = yaml.safe_load((project / "data.dvc").read_text())["outs"]
    return [project / out["path"] for out in [*raw, *(o for stage in lock.values() for o in stage.get("outs", []))]]


def _digests(project: Path) -> dict[str, str]:
    """sha256 of every file of the DVC-tracked outputs, by path relative to the project."""
    outs = _outputs(project)
    files = sorted({f for out in outs for f in ([out] if out.is_file() else out.rglob("*")) if f.is_file()})
    return {str(f.relative_to(project)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _use_s3_remote(project: Path, s3: S3Store, env: dict[str, str], add: bool) -> None:
    """As docs/lab.md says: the remote (with endpointurl) is committed, the keys go to .dvc/config.local."""
    if add:
        run(["dvc", "remote", "add", "lab", f"s3://{BUCKET}/dvc"], project, env=env)
        run(["dvc", "remote", "modify", "lab", "endpointurl", s3.endpoint], project, env=env)
    run(["dvc", "remote", "modify", "--local", "lab", "access_key_id", ACCESS_KEY], project, env=env)
    run(["dvc", "remote", "modify", "--local", "lab", "secret_access_key", SECRET_KEY], project, env=env)


def test_dvc_push_then_a_fresh_clone_pulls_identical_data(lab, lab_project, tmp_path):
    env = client_env(lab_project, lab.url)
    _use_s3_remote(lab_project, lab.s3, env, add=True)
    run(["dvc", "push", "-r", "lab"], lab_project, env=env)
    assert _s3_keys(lab.s3, "dvc/files/md5/"), "the DVC cache is in the bucket"
    git = ["git", "-c", "user.name=lab", "-c", "user.email=lab@example.org"]
    run(["git", "add", "-A"], lab_project, env=env)
    run([*git, "commit", "-q", "-m", "tiny study"], lab_project, env=env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(lab_project), str(clone)], tmp_path, env=env)
    _use_s3_remote(clone, lab.s3, env, add=False)
    run(["dvc", "pull", "-r", "lab"], clone, env=env)
    pulled = _digests(clone)
    assert any(path.startswith("models/unet4/") for path in pulled), "the trained networks came back"
    assert pulled == _digests(lab_project)
    status = run(["dvc", "status"], clone, env=env).stdout
    assert "up to date" in status, f"the clone must not need a rerun:\n{status}"


WRITER = """
import sys, pathlib, mlflow
from ncseg.tracking import runs
from ncseg.config import load_params
params_file, writer, n_runs, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
root = pathlib.Path.cwd()
params = load_params(pathlib.Path(params_file), ["tracking.experiment=ncseg-concurrency"])
for i in range(n_runs):
    with runs.parent_run(f"{writer}-{i}", params, root, kind="concurrency"):
        for step in range(steps):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        note = root / f"{writer}-{i}.txt"
        note.write_text(f"{writer} {i}")
        mlflow.log_artifact(str(note), "notes")
"""


def test_two_concurrent_writers_lose_nothing(lab, tmp_path):
    """Two processes log through ncseg's own tracking code at once, both creating the experiment on first use."""
    from mlflow import MlflowClient

    runs, steps = 4, 40
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    env = client_env(tmp_path, lab.url)
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(params), name, str(runs), str(steps)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=300)[0] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    client = MlflowClient(lab.url)
    found = client.search_runs([client.get_experiment_by_name("ncseg-concurrency").experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in found) == sorted(f"{w}-{i}" for w in "ab" for i in range(runs))
    for r in found:
        assert len(client.get_metric_history(r.info.run_id, "loss")) == steps, r.info.run_name
        assert r.data.params["seed"], "the params logged"
        note = client.download_artifacts(r.info.run_id, f"notes/{r.info.run_name}.txt", str(tmp_path / "back"))
        assert Path(note).read_text() == " ".join(r.info.run_name.split("-")), r.info.run_name


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as the kernel lists them) with a TCP listener on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_every_server_listens_on_loopback_only(lab):
    for port in (lab.db.port, int(lab.s3.endpoint.rsplit(":", 1)[1]), int(lab.url.rsplit(":", 1)[1])):
        assert _listening(port) == {"0100007F"}, f"port {port}: 127.0.0.1 only"
