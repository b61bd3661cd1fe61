"""Bring a microscopist's own images and masks into the study's raw layout, all or nothing.

Everything is read and checked before a byte is written, every problem is reported at once (not only the
first), and the new raw folder replaces the old one by a rename, so a failed import leaves `data/raw` as it was.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
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
    read_mask_and_labels,
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
    mask_path: Path
    labels: tuple[int, ...]  # the values in the mask file, named when none of them is NC


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
    mask, labels = read_mask_and_labels(paths[1], foreground)
    if mask.shape != image.data.shape:
        raise ImageError(paths[1], f"mask shape {mask.shape} differs from its image's {image.data.shape}")
    if pixel_size_nm is not None:
        image = Micrograph(image.data, pixel_size_nm, image.path)
    return Pair(name, image, mask, paths[1], labels)


def read_group_table(path: Path, column: str, names: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(group per image name, problems, warnings) from a CSV with a `name` column and a group column (e.g. the
    shared dataset's `source_slice`), each problem and warning named with the file and its line.

    Every imported image needs a row with a non-empty group, once (identical repeats are harmless): a typo that
    leaves an image in a group of its own would let its slice neighbours cross folds. Rows for images that are not
    imported are only warned about: a dataset-wide manifest used for a subset is normal, and such a row cannot put
    an imported image in a wrong group (a misspelt name is caught as the imported image's missing row).
    """
    try:
        header, rows = _csv_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return {}, [f"{path}: cannot read group manifest ({getattr(err, 'strerror', None) or err})"], []
    if "name" not in header or column not in header:
        found = ", ".join(header) or "no header"
        return {}, [f"{path}: group manifest needs columns 'name' and {column!r} (found: {found})"], []
    groups: dict[str, str] = {}
    first_line: dict[str, int] = {}  # where each name got its group, so a conflict names both lines
    problems = []
    for line, row in rows:
        name, group = (row.get("name") or "").strip(), (row.get(column) or "").strip()
        where = f"{path}, line {line}"
        if not name and not group:
            continue  # a blank row, as spreadsheets save them (",,")
        if not name:
            problems.append(f"{where}: group {group!r} for an empty 'name'")
        elif not group:
            problems.append(f"{where}: image {name!r} has an empty {column!r}")
        elif name not in groups:
            groups[name], first_line[name] = group, line
        elif groups[name] != group:
            problems.append(
                f"{where}: image {name!r} is in {groups[name]!r} and in {group!r} (line {first_line[name]})"
            )
    named = {(row.get("name") or "").strip() for _, row in rows}
    problems += [f"{path}: no group for image {n!r} (no row names it)" for n in names if n not in named]
    return groups, problems, _unused_rows(path, first_line, names)


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (stripped, so 'name, slice' works) and each row with its line in the file, blank lines and quoted
    line breaks counted. utf-8-sig drops the byte-order mark Excel writes, which would rename 'name'."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [field.strip() for field in reader.fieldnames or []]
        reader.fieldnames = header
        return header, [(reader.line_num, row) for row in reader]


def _unused_rows(path: Path, first_line: dict[str, int], names: list[str]) -> list[str]:
    """Rows for images not imported: fine for a dataset-wide manifest used for a subset, a typo otherwise."""
    unused = sorted(set(first_line) - set(names), key=first_line.__getitem__)
    if not unused:
        return []
    shown = ", ".join(f"{n!r} (line {first_line[n]})" for n in unused[:5])
    more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
    return [f"{path}: {len(unused)} row(s) name images that are not imported: {shown}{more}"]


def _overlapping_out(out: Path, folders: list[Path], groups: Path | None) -> list[str]:
    """An --out that holds an input would be replaced, inputs and all, by --force; one inside an input folder
    would mix the import into its own source. Compared resolved, so '.', '..' and symlinks hide no overlap."""
    target = out.resolve()
    problems = []
    for source in folders:
        relation = _relation(target, source.resolve())
        if relation:
            problems.append(
                f"--out {_shown(out)}: overlaps the input {_shown(source)} ({relation}); "
                "write the imported data elsewhere"
            )
    if groups is not None and groups.resolve().is_relative_to(target):
        problems.append(
            f"--out {_shown(out)}: holds the group manifest {_shown(groups)}; write the imported data elsewhere"
        )
    return problems


def _relation(target: Path, folder: Path) -> str | None:
    if target == folder:
        return "the same folder"
    if folder.is_relative_to(target):
        return "--out contains it"
    return "--out is inside it" if target.is_relative_to(folder) else None


def _shown(path: Path) -> str:
    """The path as given, and where it really is when a symlink or '..' makes that differ."""
    resolved = path.resolve()
    return str(path) if resolved == path.absolute() else f"{path} (= {resolved})"


def _mask_problems(loaded: list[Pair], foreground: frozenset[int] | None) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the masks as a set: an empty set is a mistake (0/255 masks under --foreground 7, a
    blank export), one empty mask may be a field of view without NCs, which the study must be able to hold."""
    empty = [_why_empty(pair, foreground) for pair in loaded if not pair.mask.any()]
    if loaded and len(empty) == len(loaded):
        option = f" with --foreground {_labels(foreground)}" if foreground else ""
        return [f"every mask is empty{option}; nothing to learn from", *empty], []
    return [], [f"{line}; imported as an image without NCs" for line in empty] + _absent_labels(loaded, foreground)


def _why_empty(pair: Pair, foreground: frozenset[int] | None) -> str:
    """Named with the labels the file holds: '0, 255' under --foreground 7 says the option is wrong."""
    if foreground:
        wanted, found = _labels(foreground), _labels(pair.labels)
        return f"{pair.mask_path}: none of the --foreground labels {wanted} occurs (labels found: {found})"
    return f"{pair.mask_path}: the mask marks no NC (all pixels 0)"


def _absent_labels(loaded: list[Pair], foreground: frozenset[int] | None) -> list[str]:
    """A --foreground label that no mask holds is likely a typo (1,7 for 1,2), though a subset may lack a type."""
    found = {label for pair in loaded for label in pair.labels}
    absent = (foreground or frozenset()) - found
    if not absent:
        return []
    return [f"--foreground label(s) {_labels(absent)} occur in no mask (labels found: {_labels(found)})"]


def _labels(labels: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(labels)))


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
    if foreground and min(foreground) <= 0:
        problems.append(f"--foreground {_labels(foreground)}: NC labels are positive; 0 is the background")
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
        group_of, group_problems, group_warnings = read_group_table(groups, group_column, list(paired))
        problems += group_problems
        warnings += group_warnings
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
