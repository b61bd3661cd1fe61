"""Bring a microscopist's own images and masks into the study's raw layout, all or nothing.

Everything is read and checked before a byte is written, every problem is reported at once (not only the
first), and the new raw folder replaces the old one by a rename, so a failed import leaves `data/raw` as it was.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncseg.data.augment import GROUPS
from ncseg.io.atomic import staged_folder
from ncseg.io.images import (
    ImageError,
    Micrograph,
    list_images,
    read_image,
    read_mask,
    write_mask,
    write_tiff,
)
from ncseg.io.tables import write_csv


class ImportRefusedError(ValueError):
    """All the reasons an import was refused, one line per file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("import refused, nothing written:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Pair:
    name: str
    image: Micrograph
    mask: np.ndarray


@dataclass(frozen=True)
class ImportResult:
    pairs: list[Pair]
    warnings: list[str]  # legitimate but worth a look, e.g. an image whose mask marks no NC


def _pair_paths(images: Path, masks: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    problems = []
    by_stem: dict[str, dict[str, Path]] = {"image": {}, "mask": {}}
    for kind, folder in (("image", images), ("mask", masks)):
        if not folder.is_dir():
            problems.append(f"{folder}: not a folder")
            continue
        for path in list_images(folder):
            if path.stem in by_stem[kind]:
                problems.append(f"{path}: two {kind}s named {path.stem!r} ({by_stem[kind][path.stem].name})")
            by_stem[kind][path.stem] = path
    for stem in sorted(set(by_stem["image"]) - set(by_stem["mask"])):
        problems.append(f"{by_stem['image'][stem]}: no mask named {stem}.* in {masks}")
    for stem in sorted(set(by_stem["mask"]) - set(by_stem["image"])):
        problems.append(f"{by_stem['mask'][stem]}: no image named {stem}.* in {images}")
    paired = {s: (by_stem["image"][s], by_stem["mask"][s]) for s in set(by_stem["image"]) & set(by_stem["mask"])}
    if not paired and not problems:
        problems.append(f"{images}: no image files (TIFF, PNG, DM3/DM4/EMD) found")
    return dict(sorted(paired.items())), problems


def _load_pair(
    name: str, paths: tuple[Path, Path], foreground: frozenset[int] | None, pixel_size_nm: float | None
) -> Pair:
    image = read_image(paths[0])
    mask = read_mask(paths[1], foreground)
    if mask.shape != image.data.shape:
        raise ImageError(paths[1], f"mask shape {mask.shape} differs from its image's {image.data.shape}")
    if pixel_size_nm is not None:
        image = Micrograph(image.data, pixel_size_nm, image.path)
    return Pair(name, image, mask)


def read_group_table(path: Path, column: str, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Group per image name from a CSV with a `name` column (e.g. the shared dataset's `source_slice`).

    Every imported image needs a row with a non-empty group, once (identical repeats are harmless): a typo that
    leaves an image in a group of its own would let its slice neighbours cross folds.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's byte-order mark
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as err:
        return {}, [f"{path}: cannot read group manifest ({getattr(err, 'strerror', None) or err})"]
    if not rows or "name" not in rows[0] or column not in rows[0]:
        found = ", ".join(rows[0]) if rows else "no rows"
        return {}, [f"{path}: group manifest needs columns 'name' and {column!r} (found: {found})"]
    groups: dict[str, str] = {}
    problems = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        name, group = (row["name"] or "").strip(), (row[column] or "").strip()
        if not group:
            problems.append(f"{path}, line {line}: image {name!r} has an empty {column!r}")
        elif groups.setdefault(name, group) != group:
            problems.append(f"{path}, line {line}: image {name!r} is in {groups[name]!r} and in {group!r}")
    problems += [f"{path}: no group for image {n!r}" for n in names if n not in groups]
    return groups, problems


def _unused_rows(path: Path, groups: dict[str, str], names: list[str]) -> list[str]:
    """Rows for images not imported: fine for a dataset-wide manifest used for a subset, a typo otherwise."""
    unused = sorted(set(groups) - set(names))
    if not unused:
        return []
    shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
    return [f"{path}: {len(unused)} rows name images that are not imported ({shown})"]


def _overlapping_out(out: Path, folders: list[Path], groups: Path | None) -> list[str]:
    """An --out that holds an input would be replaced, inputs and all, by --force; one inside an input folder
    would mix the import into its own source."""
    target = out.resolve()
    problems = []
    for source in folders:
        folder = source.resolve()
        if target == folder or folder.is_relative_to(target) or target.is_relative_to(folder):
            problems.append(f"--out {out}: overlaps the input {source}; write the imported data elsewhere")
    if groups is not None and groups.resolve().is_relative_to(target):
        problems.append(f"--out {out}: holds the group manifest {groups}; write the imported data elsewhere")
    return problems


def _mask_problems(loaded: list[Pair], foreground: frozenset[int] | None) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the masks as a set: an empty set is a mistake, one empty image may be real."""
    empty = [pair for pair in loaded if not pair.mask.any()]
    if loaded and len(empty) == len(loaded):
        labels = f" with --foreground {','.join(map(str, sorted(foreground)))}" if foreground else ""
        return [f"every mask is empty{labels}: {', '.join(p.name for p in empty)}; nothing to learn from"], []
    return [], [f"{pair.name}: its mask marks no NC (an image without NCs?)" for pair in empty]


def import_dataset(
    images: Path,
    masks: Path,
    out: Path,
    *,
    foreground: frozenset[int] | None = None,
    groups: Path | None = None,
    group_column: str = "group",
    pixel_size_nm: float | None = None,
    force: bool = False,
) -> ImportResult:
    """Validate every pair, then write out/images, out/masks (0/255) and out/groups.csv in one swap."""
    paired, problems = _pair_paths(images, masks)
    problems += _overlapping_out(out, [images, masks], groups)
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        problems.append(f"--pixel-size {pixel_size_nm}: must be a positive number of nm per pixel")
    if out.exists() and any(out.iterdir()) and not force:
        problems.append(f"{out}: already holds data; pass --force to replace it")
    loaded = []
    for name, paths in paired.items():
        try:
            loaded.append(_load_pair(name, paths, foreground, pixel_size_nm))
        except ImageError as err:
            problems.append(str(err))
    mask_problems, warnings = _mask_problems(loaded, foreground)
    problems += mask_problems
    group_of: dict[str, str] = {}
    if groups is not None:
        group_of, group_problems = read_group_table(groups, group_column, list(paired))
        problems += group_problems
        warnings += _unused_rows(groups, group_of, list(paired))
    if problems:
        raise ImportRefusedError(problems)
    _write(loaded, group_of, out)
    return ImportResult(loaded, warnings)


def _write(pairs: list[Pair], group_of: dict[str, str], out: Path) -> None:
    with staged_folder(out) as staging:
        for pair in pairs:
            write_tiff(staging / "images" / f"{pair.name}.tif", pair.image.data, pair.image.pixel_size_nm)
            write_mask(staging / "masks" / f"{pair.name}.tif", pair.mask, pair.image.pixel_size_nm)
        if group_of:
            rows = [{"name": p.name, "group": group_of[p.name]} for p in pairs]
            write_csv(staging / GROUPS, rows, ["name", "group"])
