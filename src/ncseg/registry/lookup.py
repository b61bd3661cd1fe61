"""Resolve a model URI before loading it, so that a missing store, model or alias is one clear sentence instead of
MLflow's traceback: `ncseg predict` and `ncseg serve` call this first, and create nothing on the way."""

from __future__ import annotations

import re
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

ALIAS_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^/]+)$")


class ModelLookupError(LookupError):
    """The model a URI names cannot be loaded; the message says why and what to do."""


def check_store(tracking_uri: str) -> None:
    """A local SQLite store must already exist: opening a missing one would create an empty one (in whatever
    folder the user happens to be in) and then fail to find any model in it."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise ModelLookupError(
            f"no MLflow store at {tracking_uri.removeprefix('sqlite:///')}: run from the project folder (where "
            "`dvc repro` made mlruns/) or set MLFLOW_TRACKING_URI"
        )


def check_model_uri(model_uri: str, tracking_uri: str) -> None:
    """For models:/NAME@ALIAS, that NAME is registered and a version holds ALIAS; otherwise say which versions
    exist and why none was promoted. Other URIs (runs:/, a folder) are left to MLflow."""
    match = ALIAS_URI.match(model_uri)
    if not model_uri.startswith(("models:/", "runs:/")):
        return
    check_store(tracking_uri)
    if match is None:
        return
    name, alias = match["name"], match["alias"]
    client = MlflowClient(tracking_uri)
    try:
        client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise ModelLookupError(_no_alias(client, name, alias)) from None


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
