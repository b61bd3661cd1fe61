"""Everything MLflow, in one place: where the store is, what a run is tagged with, how runs nest.

Local store: SQLite at <project>/mlruns/mlflow.db with artifacts under <project>/mlruns/artifacts (MLflow 3
treats the plain ./mlruns file store as legacy). MLFLOW_TRACKING_URI, when set, wins, so a team server works
unchanged. Paths are absolute and resolved from the project root, also inside the copies that
`dvc exp run --temp/--queue` works in (<project>/.dvc/tmp/exps/...), so their runs land in the project's store.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from ncseg.config import Params, flatten

STORE_DIR = "mlruns"


def project_root(start: Path | None = None) -> Path:
    path = (start or Path.cwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path


def tracking_uri(params: Params, root: Path) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if params.tracking.uri:
        return params.tracking.uri
    return f"sqlite:///{root / STORE_DIR / 'mlflow.db'}"


def setup(params: Params, root: Path) -> str:
    """Point MLflow at the store and select (or create) the experiment; returns the tracking URI."""
    import mlflow

    uri = tracking_uri(params, root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.tracking.experiment) is None:
        local = uri.startswith("sqlite:") or uri.startswith("file:")
        location = (root / STORE_DIR / "artifacts").as_uri() if local else None
        mlflow.create_experiment(params.tracking.experiment, artifact_location=location)
    mlflow.set_experiment(params.tracking.experiment)
    return uri


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def data_hash(root: Path) -> str:
    """The DVC hash of the raw data (data.dvc), so a run names exactly the images it learnt from."""
    try:
        return str(yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError):
        return "unknown"


def run_tags(model: str, root: Path) -> dict[str, str]:
    return {"model": model, "git_commit": git_commit(root), "data_md5": data_hash(root)}


@contextmanager
def parent_run(name: str, params: Params, root: Path, kind: str) -> Iterator[str]:
    """A top-level run with all params (flattened params.yaml) and the provenance tags; yields its id."""
    import mlflow

    setup(params, root)
    with mlflow.start_run(run_name=name, tags={**run_tags(name, root), "run_kind": kind}) as run:
        flat = flatten(params)
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        yield run.info.run_id


@contextmanager
def child_run(name: str, tags: dict[str, str]) -> Iterator[str]:
    import mlflow

    with mlflow.start_run(run_name=name, nested=True, tags=tags) as run:
        yield run.info.run_id
