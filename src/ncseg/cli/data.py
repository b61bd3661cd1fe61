"""`ncseg data …`: demo data, your own images and masks in, the study's rotations, near-duplicate checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ncseg.io.images import ImageError

if TYPE_CHECKING:
    from ncseg.data.leaks import Check

from ncseg.cli.common import (
    ForegroundOption,
    ParamsOption,
    PixelSizeOption,
    SetOption,
    console,
    data_app,
    fail,
    study_params,
)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: paths.raw).")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Generate the demo dataset: synthetic HAADF images of CsPbX3 NCs with exact 0/255 masks."""
    from ncseg.data.synth import generate, write_dataset

    p = study_params(params, set_)
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
        fail(f"{folder / IMAGES}: no images")
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
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename or out}: cannot write the imported data ({err.strerror or err})")
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
    classes: Annotated[
        Path | None,
        typer.Option(help="Their class maps (a folder named like the images, or one file): where the data has them."),
    ] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Append corrected images + masks (and class maps) to the raw data (paths.raw), all or nothing; then `dvc
    repro` retrains."""
    from ncseg.data.importer import ImportRefusedError, add_to_dataset
    from ncseg.io.atomic import FolderBusyError

    p = study_params(params, set_)
    labels = _foreground(foreground)
    try:
        result = add_to_dataset(
            images,
            masks,
            p.paths.raw,
            group=group,
            foreground=labels,
            pixel_size_nm=pixel_size,
            classes=classes,
            labels=p.labels,
        )
    except (ImportRefusedError, FolderBusyError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename or p.paths.raw}: cannot write the raw data ({err.strerror or err})")
    names = ", ".join(pair.name for pair in result.pairs)
    console.print(f"added {len(result.pairs)} image/mask pairs to {p.paths.raw}: {names}", highlight=False)
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _foreground(option: str | None) -> frozenset[int] | None:
    try:
        return frozenset(int(v) for v in option.split(",")) if option else None
    except ValueError:
        fail(f"--foreground {option!r}: expected comma-separated integer labels, e.g. 1,2")


@data_app.command("augment")
def data_augment(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """The study's 12 -> 22: quarter-turn copies of some raw images, and the manifest of source groups."""
    from ncseg.data.rotations import augment

    p = study_params(params, set_)
    try:
        entries = augment(p.paths.raw, p.paths.augmented, p.augment, p.seed)
    except (ImageError, ValueError, FileNotFoundError) as err:
        fail(str(err))
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
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename}: cannot read it ({err.strerror or err})" if err.filename else str(err))
    try:
        written = _pair_pictures(found, out)
    except FileExistsError as err:
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename or out}: cannot write the pictures ({err.strerror or err})")
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
    return study_params(project, None).cv.leak_threshold or LEAK_THRESHOLD


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
