"""Resolve a model URI before loading it, so that a missing store, model or alias, or weights changed after
registration, is one clear sentence instead of MLflow's (or the server's) traceback: `ncseg predict` and
`ncseg serve` call this first, and create nothing on the way."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ncseg.records import RecordError
from ncseg.serving.model import NcSegmenter
from ncseg.tracking.store import StoreError, check_readable

ALIAS_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^/]+)$")
VERSION_URI = re.compile(r"^models:/(?P<name>[^@/]+)/(?P<version>\d+)$")
WEIGHTS = "artifacts/weights"  # where a logged ncseg model keeps its networks and their card (registry.promote)


class ModelLookupError(LookupError):
    """The model a URI names cannot be loaded; the message says why and what to do."""


def check_store(tracking_uri: str) -> None:
    """A local SQLite store must already exist: opening a missing one would create an empty one (in whatever
    folder the user happens to be in) and then fail to find any model in it. It must also be readable."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise ModelLookupError(
            f"no MLflow store at {tracking_uri.removeprefix('sqlite:///')}: run from the project folder (where "
            "`dvc repro` made mlruns/) or set MLFLOW_TRACKING_URI"
        )
    try:
        check_readable(tracking_uri)
    except StoreError as err:
        raise ModelLookupError(str(err)) from err


def check_model_uri(model_uri: str, tracking_uri: str) -> None:
    """For models:/NAME@ALIAS, that NAME is registered and a version holds ALIAS; otherwise say which versions
    exist and why none was promoted. For a registered version or a model folder, that its weights are the ones it
    was registered with (`check_weights`). Anything else about a URI (runs:/, a folder that is no model) is left
    to MLflow."""
    if not model_uri.startswith(("models:/", "runs:/")):
        check_weights(model_uri, None)
        return
    check_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    if (match := ALIAS_URI.match(model_uri)) is not None:
        try:
            client.get_model_version_by_alias(match["name"], match["alias"])
        except MlflowException:
            raise ModelLookupError(_no_alias(client, match["name"], match["alias"])) from None
    check_weights(model_uri, client)


def check_weights(model_uri: str, client: MlflowClient | None) -> None:
    """The networks a logged model holds are the ones its model card lists (sha256), checked before anything loads
    them: a registered artifact changed afterwards is refused in one sentence, before `ncseg serve` starts a server
    that would die of it with a traceback. A model whose weights cannot be fetched is left to loading to describe."""
    import mlflow

    from ncseg.records import ModelCard, RecordError

    location = _location(model_uri, client)
    if location is None:
        return
    try:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/{WEIGHTS}"))
    except (MlflowException, OSError):
        return
    try:
        ModelCard.load(folder / ModelCard.FILE).verify(folder)
    except RecordError as err:
        raise ModelLookupError(f"{model_uri}: its weights are not the ones it was registered with: {err}") from err


def _location(model_uri: str, client: MlflowClient | None) -> str | None:
    """Where a model folder or a registered version (by number or alias) keeps its files; None for other URIs."""
    if client is None:
        return model_uri
    if (match := ALIAS_URI.match(model_uri) or VERSION_URI.match(model_uri)) is None:
        return None
    name, fields = match["name"], match.groupdict()
    try:
        if "alias" in fields:
            fields["version"] = client.get_model_version_by_alias(name, fields["alias"]).version
        return client.get_model_version_download_uri(name, fields["version"])
    except MlflowException:
        return None


def _no_alias(client: MlflowClient, name: str, alias: str) -> str:
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    if not versions:
        found = "has no versions" if client.search_registered_models(f"name='{name}'") else "is not registered"
        return f"model {name!r} {found} in this store: run `dvc repro` (or `ncseg register`) first"
    lines = [f"no version of {name!r} holds @{alias}; the registered versions:"]
    for v in sorted(versions, key=lambda v: int(v.version)):
        held = client.get_model_version(name, v.version).aliases
        aliases = ", ".join(f"@{a}" for a in held) or "no alias"
        lines.append(
            f"  v{v.version} {v.tags.get('architecture', '?')} (CV Jaccard {v.tags.get('cv_jaccard_mean', '?')}, "
            f"{aliases}): {v.tags.get('decision_reason', 'no recorded decision')}"
        )
    lines.append(
        "A version becomes champion only if it beats the classical baseline on the same folds (metrics/registry.json "
        f"says why the last one did not); pass models:/{name}/<version> to use one anyway."
    )
    return "\n".join(lines)


def load_served(model_uri: str, tracking_uri: str) -> NcSegmenter:
    """The served model behind `model_uri`, in this process, after `check_model_uri`; a ModelLookupError in one
    line where it cannot be loaded or is no ncseg model."""
    check_model_uri(model_uri, tracking_uri)
    try:
        with _tracking(tracking_uri):
            served = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError, RecordError) as err:  # RecordError: the model's own check of its weights
        raise ModelLookupError(f"{model_uri}: cannot load the model ({str(err).splitlines()[0]})") from err
    if not isinstance(served, NcSegmenter):
        raise ModelLookupError(f"{model_uri}: not an ncseg model (its Python model is {type(served).__name__})")
    return served


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's tracking URI for one load only. `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into the
    environment, which `store.tracking_uri` prefers: left there, it would send a long-lived process's next lookup
    (a napari session opening another project) to this store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets it again


def registered_version(model_uri: str, tracking_uri: str) -> tuple[str, str] | None:
    """(name, version) of a models:/ URI, an alias resolved to the version it points to now; None for anything
    else or where the registry cannot say."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", model_uri)
    if not match:
        return None
    name, alias, version = match.groups()
    if alias is None:
        return name, version
    try:
        return name, str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def describe_model(model_uri: str, tracking_uri: str) -> str:
    """'name v3 (@champion)' for a registered model, the alias resolved so a summary names the version that ran
    (an alias moves on); the URI itself for anything else, or where the registry cannot say."""
    found = registered_version(model_uri, tracking_uri)
    if found is None:
        return model_uri
    alias = model_uri.partition("@")[2]
    return f"{found[0]} v{found[1]}" + (f" (@{alias})" if alias else "")
