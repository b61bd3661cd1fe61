"""`ncseg train`, `evaluate`, `register`: the study's stages, as DVC runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncseg.cli.common import (
    ParamsOption,
    SetOption,
    app,
    console,
    fail,
    study_params,
)
from ncseg.records import RecordError


@app.command("train")
def train(
    models: Annotated[
        list[str] | None, typer.Argument(help="Model names from params.yaml `models:` (default: all of them).")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Grouped k-fold cross-validation, logged to MLflow (a parent run per model, a child run per fold)."""
    from ncseg.io.atomic import FolderBusyError
    from ncseg.tracking.store import project_root
    from ncseg.training.cv import cross_validate

    p = study_params(params, set_)
    unknown = [m for m in models or [] if m not in p.models]
    if unknown:
        fail(f"unknown model {', '.join(unknown)}; params.yaml defines: {', '.join(p.models)}")
    for model in models or list(p.models):
        try:
            summary = cross_validate(model, p, project_root())
        except (FolderBusyError, ValueError, FileNotFoundError) as err:  # ImageError, RecordError: ValueErrors
            fail(str(err))
        threshold = f", threshold {summary.threshold:.2f}" if summary.threshold is not None else ""
        console.print(f"{model}: CV Jaccard {summary.jaccard_mean:.3f} ± {summary.jaccard_std:.3f}{threshold}")


@app.command("evaluate")
def evaluate(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Compare all models' CV results: metrics/summary.{json,md} and an MLflow `comparison` run."""
    from ncseg.tracking.store import StoreError, project_root
    from ncseg.training.report import evaluate as run_evaluate

    p = study_params(params, set_)
    try:
        summary = run_evaluate(p, project_root())
    except (RecordError, StoreError) as err:
        fail(str(err))
    console.print((p.paths.metrics / "summary.md").read_text(), highlight=False, soft_wrap=True)
    console.print(f"best model: {summary.best}")


@app.command("register")
def register(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Register the best CV model; alias champion only if it beats the classical baseline and the champion."""
    from ncseg.io.atomic import FolderBusyError
    from ncseg.registry.promote import RegistryRefusedError, register_best
    from ncseg.tracking.store import StoreError, project_root

    p = study_params(params, set_)
    try:
        d = register_best(p, project_root())
    except (RecordError, FolderBusyError, StoreError, RegistryRefusedError) as err:
        fail(str(err))
    verb = "registered" if d.created else "kept"
    alias = f"@{d.alias}" if d.alias else "no alias"
    console.print(f"{verb} {d.model_name} v{d.version} ({d.architecture}) -> {alias}: {d.reason}", highlight=False)
