"""`ncseg serve`, `predict`, `review`: a registered model on your micrographs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ncseg.cli.common import (
    ParamsOption,
    SetOption,
    app,
    console,
    fail,
    study_params,
)
from ncseg.config import ConfigError


@app.command("serve")
def serve(
    model_uri: Annotated[str, typer.Option("--model-uri", "-m", help="Model to serve.")] = "",
    host: Annotated[str, typer.Option("--host", "-h", help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 5001,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Print, then run, the exact `mlflow models serve` command for the registered champion."""
    import os

    from ncseg.registry.lookup import ModelLookupError, check_model_uri
    from ncseg.serving.server import port_problem, serve_command, server_env
    from ncseg.tracking.store import project_root, tracking_uri

    p = study_params(params, set_)
    uri = model_uri or f"models:/{p.registry.model_name}@champion"
    env = server_env(tracking_uri(p, project_root()))
    try:
        check_model_uri(uri, env["MLFLOW_TRACKING_URI"])
    except ModelLookupError as err:
        fail(str(err))
    if why := port_problem(host, port):
        fail(f"{host}:{port}: cannot listen there ({why}); stop what serves there or pick another --port / --host")
    command = serve_command(uri, host, port)
    console.print(f"MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']} {' '.join(command)}", highlight=False)
    os.execvpe(command[0], command, env)


@app.command("review")
def review(
    predictions: Annotated[Path, typer.Argument(help="An `ncseg predict` output folder.")],
    top: Annotated[int | None, typer.Option(min=1, help="Show only the N most uncertain images.")] = None,
) -> None:
    """List predicted images worst-first by uncertainty: what to correct first (then `ncseg data add`)."""
    from ncseg.predict.review import ReviewError, rank

    try:
        candidates = rank(predictions)
    except ReviewError as err:
        fail(str(err))
    has_ood = any(c.ood is not None for c in candidates)
    table = Table(title=f"{predictions}: most uncertain first", title_justify="left")
    for column in ("#", "image", "uncertainty", "particles", *(["ood"] if has_ood else []), "correct"):
        numeric = column in ("#", "uncertainty", "particles")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")  # paths whole
    for k, c in enumerate(candidates[:top], 1):
        score = f"{c.uncertainty:.4g}" if c.uncertainty is not None else "not scored"
        ood = [c.ood or ""] if has_ood else []
        table.add_row(str(k), c.image, score, c.n_particles, *ood, str(c.open.relative_to(predictions)))
    Console().print(table)


@app.command("predict")
def predict(
    model_uri: Annotated[str, typer.Argument(help="e.g. models:/ncseg-nc-segmenter@champion, runs:/…, a folder.")],
    inputs: Annotated[list[Path], typer.Argument(help="Images (TIFF, PNG, DM3/DM4/EMD) or folders of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    pixel_size: Annotated[float | None, typer.Option(help="Pixel size in nm (overrides the files').")] = None,
    threshold: Annotated[float | None, typer.Option(help="Probability threshold (default: the model's).")] = None,
    save_probability: Annotated[bool, typer.Option(help="Also write the probability map (float32 TIFF).")] = False,
    rois: Annotated[bool, typer.Option(help="Also write an ImageJ RoiSet per image (rois/NAME.zip).")] = False,
    tta: Annotated[
        str | None, typer.Option(help="Test-time augmentation: none, flip or d4 (default: the model's).")
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option("--params", "-p", help="The study's parameters file (default: ./params.yaml where there is one)."),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Segment micrographs: masks (0/255 TIFF), overlays, per-particle CSVs in nm, a summary and a histogram (a
    K-class model: also the class map, and per particle class its labels, table and histogram)."""
    from rich.progress import Progress

    from ncseg import predict as prediction
    from ncseg.tracking import store

    project = params or Path("params.yaml")
    p = study_params(project, set_) if params or project.is_file() else None  # outside a project the model says enough
    try:
        files = prediction.collect_inputs(inputs)
        problems = prediction.check_settings(out, threshold, pixel_size, tta) + prediction.output_collisions(files)
        if problems:
            raise prediction.PredictRefusedError(problems)
    except ValueError as err:
        fail(str(err))
    try:
        segmenter = prediction.load_segmenter(model_uri, prediction.store_uri(p, store.project_root()))
        particles = prediction.particle_settings(segmenter.particles, p, set_ or [])
        if refused := segmenter.refusals(threshold, particles):
            raise prediction.PredictRefusedError(refused)
    except (LookupError, ConfigError, ValueError) as err:
        fail(str(err))
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("segmenting", total=len(files))
            report = prediction.run(
                segmenter,
                files,
                out,
                particles,
                threshold=threshold,
                pixel_size_nm=pixel_size,
                save_probability=save_probability,
                rois=rois,
                tta=tta,
                on_image=lambda _: progress.advance(task),
            )
    except OSError as err:
        fail(f"{err.filename or out}: cannot write the predictions ({err.strerror or err})")
    except ValueError as err:  # summary.csv made unreadable while the images were segmented
        fail(str(err))
    n = sum(row["n_particles"] for row in report.done)
    console.print(f"{len(report.done)} images, {n} particles -> {out}")
    if report.failed:
        fail(f"{len(report.failed)} of {len(files)} images failed:\n  " + "\n  ".join(report.failed))
