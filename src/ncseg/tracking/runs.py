"""What a run is: the experiment it goes to, its provenance tags, how runs nest, and everything a run logs."""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ncseg.config import Params, flatten
from ncseg.data.layout import MANIFEST
from ncseg.io.atomic import process_alive
from ncseg.tracking.store import (
    artifacts_uri,
    check_location,
    check_readable,
    first_use_lock,
    local_uri,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow.entities import Experiment

    from ncseg.data.leaks import LeakFreeGroups
    from ncseg.metrics import EpochLog
    from ncseg.records import CVSummary

# Which process started a run: a run whose process was killed (SIGKILL, the OOM killer) stays RUNNING for good,
# as MLflow's end_run never ran; the next run in the experiment marks it KILLED, with the reason under KILLED_TAG.
OWNER_HOST, OWNER_PID, KILLED_TAG = "ncseg.host", "ncseg.pid", "ncseg.killed"
# The experiment's description in the MLflow UI (its note).
EXPERIMENT_TAGS = {
    "mlflow.note.content": (
        "ncseg: nanocrystal segmentation in HAADF-STEM images. One parent run per model (grouped k-fold CV; "
        "description = rank and Jaccard), a child run per fold, a `comparison` run with the table across models, "
        "and `register` runs with the registry decision. Metrics: train/…, val/… (inner validation, per epoch), "
        "test/… (each fold's held-out images; parents: mean and std over folds)."
    ),
}


def setup(params: Params, root: Path) -> str:
    """Point MLflow at the store and select (or create) the experiment; returns the tracking URI."""
    import mlflow

    uri = tracking_uri(params, root)
    mlflow.set_tracking_uri(uri)
    with first_use_lock(uri):
        check_readable(uri)  # under the lock: not while another process is still creating the store
        experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
        if experiment is None:
            local = uri.startswith("sqlite:") or uri.startswith("file:")
            location = artifacts_uri(root) if local else None
            _create_experiment(params.tracking.experiment, location)  # with its location and tags
    if experiment is not None:
        _check_existing(experiment, uri, root)
    mlflow.set_experiment(params.tracking.experiment)
    return uri


def _check_existing(experiment: Experiment, uri: str, root: Path) -> None:
    """An experiment found in the store: not one of a folder this project was copied from, and described in the UI
    (one made by an older ncseg gets the description too)."""
    import mlflow

    if uri == local_uri(root):
        check_location(experiment.artifact_location, root)
    if any(experiment.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):
        for key, value in EXPERIMENT_TAGS.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


def _create_experiment(name: str, location: str | None) -> None:
    """Two trainings that start at once on a fresh store both find no experiment; the later create then fails
    with RESOURCE_ALREADY_EXISTS, which only means that the other one made it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


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


def run_params(params: Params, model: str | None) -> dict[str, str]:
    """Flattened params.yaml without the other models' sections: a model's run shows its own settings only."""
    own = f"models.{model}."
    return {k: v for k, v in flatten(params).items() if not k.startswith("models.") or k.startswith(own)}


@contextmanager
def parent_run(name: str, params: Params, root: Path, kind: str, model: str | None = None) -> Iterator[str]:
    """A top-level run with the params of `model` (all of them when None) and the provenance tags; yields its id."""
    import mlflow

    setup(params, root)
    _end_orphaned_runs(mlflow.get_experiment_by_name(params.tracking.experiment).experiment_id)
    with mlflow.start_run(run_name=name, tags={**run_tags(name, root), **_owner_tags(), "run_kind": kind}) as run:
        items = list(run_params(params, model).items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        yield run.info.run_id


@contextmanager
def child_run(name: str, tags: dict[str, str]) -> Iterator[str]:
    import mlflow

    with mlflow.start_run(run_name=name, nested=True, tags={**tags, **_owner_tags()}) as run:
        yield run.info.run_id


def _owner_tags() -> dict[str, str]:
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}


def _end_orphaned_runs(experiment_id: str) -> None:
    """Mark KILLED the runs left RUNNING by a process of this machine that has ended. Runs of another machine
    (a team server) cannot be judged from here and are left as they are."""
    import mlflow

    client, host = mlflow.MlflowClient(), socket.gethostname()
    running = f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'"
    for run in client.search_runs([experiment_id], running, max_results=1000):
        pid = run.data.tags.get(OWNER_PID, "")
        if pid.isdigit() and not process_alive(int(pid), host):
            why = f"process {pid} on {host} ended without ending the run (killed or crashed); marked by the next run"
            client.set_tag(run.info.run_id, KILLED_TAG, why)
            client.set_terminated(run.info.run_id, "KILLED")


def epoch_metrics(log: EpochLog) -> dict[str, float]:
    """Per-epoch curves, grouped as the MLflow UI groups them: `train/…` and `val/…` (inner validation)."""
    return {
        "train/loss": log.train_loss,
        "val/loss": log.val_loss,
        "val/jaccard_study": log.val_jaccard_study,
        "val/jaccard_tuned": log.val_jaccard_tuned,
    }


def log_epoch(log: EpochLog) -> None:
    """One epoch's curves on the active (fold) run."""
    import mlflow

    mlflow.log_metrics(epoch_metrics(log), step=log.epoch)


def log_fold_params(values: dict[str, str | int]) -> None:
    """What a fold trained and was tested on, on the active (fold) run."""
    import mlflow

    mlflow.log_params(values)


def log_runtime(values: dict[str, str]) -> None:
    """How this machine ran the study (e.g. the precision `auto` became), as `runtime.*` params of the active run:
    the numbers of one params file differ between CPU kinds, and the run says which it was."""
    import mlflow

    mlflow.log_params({f"runtime.{key}": value for key, value in values.items()})


def log_weights(path: Path) -> None:
    """A fold network's state dict, beside its run's metrics (the model card lists it with its sha256)."""
    import mlflow

    mlflow.log_artifact(str(path), "weights")


def log_comparison(best: str, means: dict[str, dict[str, float]], table: str) -> None:
    """The comparison run: the best model as a tag, each model's mean test metrics (searchable), the same numbers as
    a table the UI shows, and the markdown table `evaluate` prints."""
    import mlflow

    mlflow.set_tag("best_model", best)
    for name, values in means.items():
        mlflow.log_metrics({f"{name}/test/{k}_mean": v for k, v in values.items()})
    keys = list(next(iter(means.values()), {}))
    columns = {f"{k}_mean": [values[k] for values in means.values()] for k in keys}
    mlflow.log_table({"model": list(means), **columns}, "cv_summary.json")
    mlflow.log_text(table, "cv_summary.md")


def log_training_data(augmented: Path, root: Path) -> None:
    """The images a CV run learnt from, as an MLflow dataset: the manifest (name, source, group, rotation) with the
    DVC hash of the raw data as its digest, so the UI's Datasets column tells runs on different data apart."""
    import mlflow
    import pandas as pd

    manifest = augmented / MANIFEST
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns that it cannot choose
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            pd.read_csv(manifest, dtype=str),
            source=manifest.resolve().as_uri(),
            name=augmented.name,
            digest=data_hash(root)[:32],
        )
    mlflow.log_input(dataset, context="training")


def log_cv_outcome(summary: CVSummary, folds: list[tuple[str, dict[str, float]]], plots: Path, weights: Path) -> None:
    """Each fold's test scores on its child run (`test/…`), the CV aggregate on the parent, the plots, the card."""
    import mlflow

    client = mlflow.MlflowClient()
    for run_id, metrics in folds:
        for key, value in metrics.items():
            client.log_metric(run_id, f"test/{key}", value)
    numbers = summary.model_dump(exclude={"jaccard_per_fold", "fold_thresholds", "intensity_window", "leak_threshold"})
    mlflow.log_metrics({_cv_metric(k): v for k, v in numbers.items() if isinstance(v, float)})
    for name, values in (summary.classes or {}).items():  # a K-class study: cv/<class>/jaccard_mean, ...
        mlflow.log_metrics({f"cv/{name}/{key}": value for key, value in values.items()})
    mlflow.log_artifacts(str(plots), "plots")  # overlays/, threshold sweep, learning curves, folds.csv
    mlflow.log_artifact(str(weights / "model.json"), "weights")


def log_split_groups(found: LeakFreeGroups, names: list[str]) -> None:
    """What the folds kept together: how many groups they split and which of the data's were joined (searchable
    params, a readable tag), and every near-duplicate pair that joined them, by image name (leaks.json)."""
    import mlflow

    from ncseg.data.groups import first_few

    mlflow.log_params({"split.groups": len(set(found.groups)), "split.joined_groups": len(found.joined)})
    mlflow.set_tag("split.joined", first_few([" + ".join(j) for j in found.joined]) or "none")
    mlflow.log_dict(found.record(names), "leaks.json")


def _cv_metric(key: str) -> str:
    """`jaccard_mean` -> `test/jaccard_mean` (mean over folds of the test scores); the threshold stays as it is."""
    return key if key in ("threshold", "study_threshold", "temperature") else f"test/{key}"


def describe_run(run_id: str, text: str) -> None:
    """The run's description in the MLflow UI (its note)."""
    import mlflow

    mlflow.MlflowClient().set_tag(run_id, "mlflow.note.content", text)
