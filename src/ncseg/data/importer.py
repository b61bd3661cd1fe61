"""Bring a microscopist's own images and masks into the study's raw layout, all or nothing.

Everything is read and checked before a byte is written, every problem is reported at once (not only the
first), and the new raw folder replaces the old one by a rename, so a failed import leaves `data/raw` as it was.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncseg.data.augment import GROUPS
from ncseg.io.atomic import atomic_path
from ncseg.io.images import (
    ImageError,
    Micrograph,
    list_images,
    read_image,
    read_mask,
    write_mask,
    write_tiff,
)


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
    """Group per image name from a CSV with a `name` column (e.g. the shared dataset's `source_slice`)."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        return {}, [f"{path}: cannot read group manifest ({err.strerror})"]
    if not rows or "name" not in rows[0] or column not in rows[0]:
        return {}, [f"{path}: group manifest needs columns 'name' and {column!r}"]
    groups = {row["name"]: row[column] for row in rows}
    missing = [n for n in names if n not in groups]
    return groups, [f"{path}: no group for image {n!r}" for n in missing]


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
) -> list[Pair]:
    """Validate every pair, then write out/images, out/masks (0/255) and out/groups.csv in one swap."""
    paired, problems = _pair_paths(images, masks)
    if out.exists() and any(out.iterdir()) and not force:
        problems.append(f"{out}: already holds data; pass --force to replace it")
    loaded = []
    for name, paths in paired.items():
        try:
            loaded.append(_load_pair(name, paths, foreground, pixel_size_nm))
        except ImageError as err:
            problems.append(str(err))
    group_of: dict[str, str] = {}
    if groups is not None:
        group_of, group_problems = read_group_table(groups, group_column, list(paired))
        problems += group_problems
    if problems:
        raise ImportRefusedError(problems)
    _write(loaded, group_of, out)
    return loaded


def _write(pairs: list[Pair], group_of: dict[str, str], out: Path) -> None:
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for pair in pairs:
            write_tiff(staging / "images" / f"{pair.name}.tif", pair.image.data, pair.image.pixel_size_nm)
            write_mask(staging / "masks" / f"{pair.name}.tif", pair.mask, pair.image.pixel_size_nm)
        if group_of:
            with atomic_path(staging / GROUPS) as tmp, tmp.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["name", "group"])
                writer.writerows((p.name, group_of[p.name]) for p in pairs)
        backup = out.with_name(f".{out.name}.previous")
        shutil.rmtree(backup, ignore_errors=True)
        if out.exists():
            out.rename(backup)
        staging.rename(out)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
