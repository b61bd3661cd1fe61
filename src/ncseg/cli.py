"""`ncseg`: the command line. Thin by design: parse arguments, load params, call the library, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ncseg.config import ConfigError, Params, load_params
from ncseg.io.images import ImageError
from ncseg.records import RecordError

if TYPE_CHECKING:
    from ncseg.data.leaks import Check

app = typer.Typer(
    help="Find nanocrystals in HAADF-STEM images: data, training, registry, prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Demo data, your own data, and the study's augmentation.", no_args_is_help=True)
app.add_typer(data_app, name="data")
store_app = typer.Typer(help="The project's local MLflow store (mlruns/).", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = Console(stderr=True)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The study's parameters file.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="Override a parameter, e.g. -S train.epochs=2 (repeatable).")
]
ForegroundOption = Annotated[str | None, typer.Option(help="Masks are label maps; these labels are NC, e.g. '1,2'.")]
PixelSizeOption = Annotated[float | None, typer.Option(help="Pixel size in nm, where files carry none.")]


def _params(path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(path, overrides)
    except ConfigError as err:
        _fail(str(err))


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: paths.raw).")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Generate the demo dataset: synthetic HAADF images of CsPbX3 NCs with exact 0/255 masks."""
    from ncseg.data.synth import generate, write_dataset

    p = _params(params, set_)
    target = out or p.paths.raw
    images = generate(p.data.synth, p.seed)
    write_dataset(images, target, p.data.synth.pixel_size_nm)
    n = sum(len(i.crystals) for i in images)
    console.print(f"wrote {len(images)} images with {n} NCs to {target}")


@data_app.command("preview")
def data_preview(
    folder: Annotated[Path, typer.Argument(help="A raw-data folder (images/ + masks/).")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("docs/demo_data.png"),
    count: Annotated[int, typer.Option(help="How many images, spread over the folder.")] = 3,
) -> None:
    """A picture of some images with their mask outlines (the README's figure)."""
    import numpy as np

    from ncseg import figures
    from ncseg.data.layout import IMAGES, MASKS
    from ncseg.io.images import list_images, read_image, read_mask
    from ncseg.normalization import normalize

    images = list_images(folder / IMAGES)
    if not images:
        _fail(f"{folder / IMAGES}: no images")
    picked = [images[i] for i in np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)]
    tiles = [figures.outline(normalize(read_image(p).data), read_mask(folder / MASKS / p.name)) for p in picked]
    figures.save_png(out, figures.montage(tiles))
    console.print(f"wrote {out} ({', '.join(p.stem for p in picked)})")


@data_app.command("import")
def data_import(
    images: Annotated[Path, typer.Argument(help="Folder of microscope images (TIFF 8/16/32-bit, PNG, …).")],
    masks: Annotated[
        Path, typer.Argument(help="Folder of masks or ImageJ RoiSets (.zip/.roi) with the same file names.")
    ],
    out: Annotated[Path, typer.Option(help="Raw-data folder to create (replaced whole on success).")] = Path(
        "data/raw"
    ),
    foreground: ForegroundOption = None,
    groups: Annotated[
        Path | None, typer.Option(help="CSV giving each image's group (same specimen region) for the CV split.")
    ] = None,
    group_column: Annotated[str, typer.Option(help="Column of --groups holding the group.")] = "group",
    pixel_size: PixelSizeOption = None,
    classes: Annotated[
        Path | None,
        typer.Option(help="Folder of per-pixel class maps named like the images (for a model's aux_classes head)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing, non-empty --out.")] = False,
) -> None:
    """Validate and import your own images + masks; nothing is written unless every file passes."""
    from ncseg.data.importer import ImportRefusedError, import_dataset

    labels = _foreground(foreground)
    try:
        result = import_dataset(
            images,
            masks,
            out,
            foreground=labels,
            groups=groups,
            group_column=group_column,
            pixel_size_nm=pixel_size,
            classes=classes,
            force=force,
        )
    except ImportRefusedError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"{err.filename or out}: cannot write the imported data ({err.strerror or err})")
    uncalibrated = [p.name for p in result.pairs if p.image.pixel_size_nm is None]
    console.print(f"imported {len(result.pairs)} image/mask pairs into {out}")
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)  # paths unbroken
    if uncalibrated:
        console.print(
            f"[yellow]note:[/] {len(uncalibrated)} images carry no pixel size; sizes will be in px "
            "(pass --pixel-size to calibrate)"
        )


@data_app.command("add")
def data_add(
    images: Annotated[Path, typer.Argument(help="An image, or a folder of them (new names, not yet in the data).")],
    masks: Annotated[
        Path, typer.Argument(help="Its mask or ImageJ RoiSet (.zip/.roi), or a folder of them with the same names.")
    ],
    group: Annotated[
        str | None, typer.Option(help="The specimen region they show: CV keeps a group in one fold.")
    ] = None,
    foreground: ForegroundOption = None,
    pixel_size: PixelSizeOption = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Append corrected images + masks to the raw data (paths.raw), all or nothing; then `dvc repro` retrains."""
    from ncseg.data.importer import ImportRefusedError, add_to_dataset
    from ncseg.io.atomic import FolderBusyError

    p = _params(params, set_)
    labels = _foreground(foreground)
    try:
        result = add_to_dataset(images, masks, p.paths.raw, group=group, foreground=labels, pixel_size_nm=pixel_size)
    except (ImportRefusedError, FolderBusyError) as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"{err.filename or p.paths.raw}: cannot write the raw data ({err.strerror or err})")
    names = ", ".join(pair.name for pair in result.pairs)
    console.print(f"added {len(result.pairs)} image/mask pairs to {p.paths.raw}: {names}", highlight=False)
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _foreground(option: str | None) -> frozenset[int] | None:
    try:
        return frozenset(int(v) for v in option.split(",")) if option else None
    except ValueError:
        _fail(f"--foreground {option!r}: expected comma-separated integer labels, e.g. 1,2")


@data_app.command("augment")
def data_augment(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """The study's 12 -> 22: quarter-turn copies of some raw images, and the manifest of source groups."""
    from ncseg.data.rotations import augment

    p = _params(params, set_)
    try:
        entries = augment(p.paths.raw, p.paths.augmented, p.augment, p.seed)
    except (ImageError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    rotated = sum(e.rotation_deg > 0 for e in entries)
    console.print(f"wrote {len(entries)} images ({rotated} rotated copies) to {p.paths.augmented}")


@data_app.command("check")
def data_check(
    train: Annotated[Path, typer.Argument(help="Training images: a dataset folder (images/ inside) or a folder.")],
    test: Annotated[Path | None, typer.Argument(help="An external test set, checked against TRAIN.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Similarity of a near-copy (default: the study's cv.leak_threshold)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for a side-by-side PNG of each pair (replaced).")] = Path(
        "near-duplicates"
    ),
    params: Annotated[
        Path | None,
        typer.Option("--params", "-p", help="The study's parameters file (default: ./params.yaml where there is one)."),
    ] = None,
) -> None:
    """Near-duplicate images inside TRAIN, and between TEST and TRAIN (exit code 2 when a test image has a near-copy
    in training: a score on TEST would then measure recall of seen images, not generalisation)."""
    from ncseg.data import leaks

    limit = threshold if threshold is not None else _leak_threshold(params)
    try:
        found = leaks.check(train, test, limit)
    except ImageError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"{err.filename}: cannot read it ({err.strerror or err})" if err.filename else str(err))
    try:
        written = _pair_pictures(found, out)
    except FileExistsError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"{err.filename or out}: cannot write the pictures ({err.strerror or err})")
    title = f"near-duplicate pairs (similarity >= {limit:g})"
    if found.across:
        rows = [(found.test[p.a].stem, found.train[p.b].stem, f"{p.similarity:.3f}") for p in found.across]
        Console().print(_table(f"{len(rows)} {title}", ("test image", "near-copy in training", "similarity"), rows))
    rows = [(found.train[p.a].stem, found.train[p.b].stem, f"{p.similarity:.3f}") for p in found.within]
    if found.groups:  # a pair inside one group is harmless; one across groups is what CV joins
        rows = [(*row, _pair_groups(found.groups, *row[:2])) for row in rows]
    columns = ("training image", "near-copy", "similarity", *(["groups"] if found.groups else []))
    Console().print(_table(f"{len(rows)} {title}", columns, rows))
    console.print(f"{written} side-by-side pictures in {out}", highlight=False, soft_wrap=True)
    if found.across:
        copied = len({p.a for p in found.across})
        console.print(f"{copied} of {len(found.test)} test images have a near-copy in training", highlight=False)
        raise typer.Exit(2)


def _leak_threshold(params: Path | None) -> float:
    """The study's cv.leak_threshold (--params, or ./params.yaml where there is one), else the default; a study that
    switched it off still checks at the default."""
    from ncseg.config import LEAK_THRESHOLD

    project = params or Path("params.yaml")
    if params is None and not project.is_file():
        return LEAK_THRESHOLD
    return _params(project, None).cv.leak_threshold or LEAK_THRESHOLD


def _pair_pictures(found: Check, out: Path) -> int:
    """A side-by-side PNG of each pair (`across-0.998-TEST-TRAIN.png`, `within-…`), in a folder that replaces `out`
    whole, so no picture of an earlier check is left beside them. A folder holding anything but PNGs is refused."""
    from ncseg import figures
    from ncseg.io.atomic import staged_folder
    from ncseg.io.images import read_image
    from ncseg.normalization import normalize

    if out.exists() and (not out.is_dir() or any(p.suffix != ".png" for p in out.iterdir())):
        raise FileExistsError(f"{out}: holds other files than a check's pictures; pass another --out")
    pairs = [("across", p, found.test[p.a]) for p in found.across]
    pairs += [("within", p, found.train[p.a]) for p in found.within]
    with staged_folder(out) as staging:
        for kind, pair, first in pairs:
            second = found.train[pair.b]
            panel = figures.side_by_side([normalize(read_image(path).data) for path in (first, second)])
            figures.save_png(staging / f"{kind}-{pair.similarity:.3f}-{first.stem}-{second.stem}.png", panel)
    return len(pairs)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column == "similarity" else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _pair_groups(groups: dict[str, str], a: str, b: str) -> str:
    """'same' where both images are in one group (fine); else both groups: CV joins them."""
    ga, gb = groups.get(a, a), groups.get(b, b)
    return "same" if ga == gb else f"{ga} | {gb}"


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

    p = _params(params, set_)
    unknown = [m for m in models or [] if m not in p.models]
    if unknown:
        _fail(f"unknown model {', '.join(unknown)}; params.yaml defines: {', '.join(p.models)}")
    for model in models or list(p.models):
        try:
            summary = cross_validate(model, p, project_root())
        except (FolderBusyError, ValueError, FileNotFoundError) as err:  # ImageError, RecordError: ValueErrors
            _fail(str(err))
        threshold = f", threshold {summary.threshold:.2f}" if summary.threshold is not None else ""
        console.print(f"{model}: CV Jaccard {summary.jaccard_mean:.3f} ± {summary.jaccard_std:.3f}{threshold}")


@app.command("evaluate")
def evaluate(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Compare all models' CV results: metrics/summary.{json,md} and an MLflow `comparison` run."""
    from ncseg.tracking.store import StoreError, project_root
    from ncseg.training.report import evaluate as run_evaluate

    p = _params(params, set_)
    try:
        summary = run_evaluate(p, project_root())
    except (RecordError, StoreError) as err:
        _fail(str(err))
    console.print((p.paths.metrics / "summary.md").read_text(), highlight=False, soft_wrap=True)
    console.print(f"best model: {summary.best}")


@app.command("register")
def register(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Register the best CV model; alias champion only if it beats the classical baseline and the champion."""
    from ncseg.io.atomic import FolderBusyError
    from ncseg.registry.promote import RegistryRefusedError, register_best
    from ncseg.tracking.store import StoreError, project_root

    p = _params(params, set_)
    try:
        d = register_best(p, project_root())
    except (RecordError, FolderBusyError, StoreError, RegistryRefusedError) as err:
        _fail(str(err))
    verb = "registered" if d.created else "kept"
    alias = f"@{d.alias}" if d.alias else "no alias"
    console.print(f"{verb} {d.model_name} v{d.version} ({d.architecture}) -> {alias}: {d.reason}", highlight=False)


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

    p = _params(params, set_)
    uri = model_uri or f"models:/{p.registry.model_name}@champion"
    env = server_env(tracking_uri(p, project_root()))
    try:
        check_model_uri(uri, env["MLFLOW_TRACKING_URI"])
    except ModelLookupError as err:
        _fail(str(err))
    if why := port_problem(host, port):
        _fail(f"{host}:{port}: cannot listen there ({why}); stop what serves there or pick another --port / --host")
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
        _fail(str(err))
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
    """Segment micrographs: masks (0/255 TIFF), overlays, per-particle CSVs in nm, a summary and a histogram."""
    from rich.progress import Progress

    from ncseg import predict as prediction
    from ncseg.tracking import store

    project = params or Path("params.yaml")
    p = _params(project, set_) if params or project.is_file() else None  # outside a project the model says enough
    try:
        files = prediction.collect_inputs(inputs)
        problems = prediction.check_settings(out, threshold, pixel_size, tta) + prediction.output_collisions(files)
        if problems:
            raise prediction.PredictRefusedError(problems)
    except ValueError as err:
        _fail(str(err))
    try:
        segmenter = prediction.load_segmenter(model_uri, prediction.store_uri(p, store.project_root()))
        particles = prediction.particle_settings(segmenter.particles, p, set_ or [])
    except (LookupError, ConfigError) as err:
        _fail(str(err))
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
        _fail(f"{err.filename or out}: cannot write the predictions ({err.strerror or err})")
    except ValueError as err:  # summary.csv made unreadable while the images were segmented
        _fail(str(err))
    n = sum(row["n_particles"] for row in report.done)
    console.print(f"{len(report.done)} images, {n} particles -> {out}")
    if report.failed:
        _fail(f"{len(report.failed)} of {len(files)} images failed:\n  " + "\n  ".join(report.failed))


@store_app.command("relocate")
def store_relocate(
    old_root: Annotated[
        Path | None, typer.Option("--from", help="The folder the store was made in (default: the one it records).")
    ] = None,
) -> None:
    """After copying or moving the project folder: point the store's artifact locations (experiments, runs, logged
    models, model versions, datasets) at this folder instead of the old one."""
    from ncseg.tracking.store import StoreError, project_root, relocate

    try:
        done = relocate(project_root(), old_root.resolve() if old_root else None)
    except StoreError as err:
        _fail(str(err))
    if done.old_root == done.new_root:
        console.print(
            f"nothing to rewrite: the store already points at {done.new_root}", highlight=False, soft_wrap=True
        )
        return
    if done.total == 0:
        _fail(f"no location in the store is under {done.old_root}")
    counts = ", ".join(f"{n} {column}" for column, n in done.rewritten.items() if n)
    console.print(f"{done.old_root} -> {done.new_root}: {counts}", highlight=False, soft_wrap=True)
