"""Bring a microscopist's own images and masks into the study's raw layout, all or nothing.

Everything is read and checked before a byte is written, every problem is reported at once (not only the
first), and the new raw folder replaces the old one by a rename, so a failed import leaves `data/raw` as it was.
A mask is a raster (0/255, 0/1, or a label map with --foreground) or the ImageJ ROIs of its image (a RoiSet .zip or
one .roi), filled as ImageJ fills them. `add_to_dataset` appends corrected images to an existing raw folder the same
way: the folder is rebuilt beside itself, under a lock, and swapped in whole.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from roifile import ImagejRoi

from ncseg.data.groups import first_few, read_group_table, read_groups, write_groups
from ncseg.data.layout import (
    CLASSES,
    DATASET_ENTRIES,
    GROUP,
    IMAGES,
    MASKS,
    class_map_path,
    image_path,
    mask_path,
)
from ncseg.interop.imagej import is_roi_file, read_rois, rois_to_labels
from ncseg.io.atomic import folder_lock, staged_folder
from ncseg.io.images import (
    IMAGE_SUFFIXES,
    ImageError,
    Micrograph,
    list_images,
    read_class_map,
    read_image,
    read_mask_and_labels,
    write_mask,
    write_tiff,
)
from ncseg.labels import LabelSet


class ImportRefusedError(ValueError):
    """All the reasons an import was refused, one line per file."""

    def __init__(self, problems: list[str], action: str = "import") -> None:
        super().__init__(f"{action} refused, nothing written:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Pair:
    name: str
    image: Micrograph
    mask: np.ndarray
    mask_path: Path
    labels: tuple[int, ...]  # the values in a raster mask, named when none of them is NC; () for ROIs


@dataclass(frozen=True)
class ImportResult:
    pairs: list[Pair]
    warnings: list[str]  # legitimate but worth a look, e.g. an image whose mask marks no NC


def _mask_files(folder: Path) -> list[Path]:
    """Raster masks and ImageJ ROI files (what `ncseg predict --rois` writes, corrected in Fiji)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_roi_file(p)))


def _listed(path: Path, kind: str) -> tuple[list[Path], list[str]]:
    """The files of a folder, or one file named directly (`ncseg data add one.tif one.zip`)."""
    if path.is_dir():
        return (list_images(path) if kind == "image" else _mask_files(path)), []
    if path.is_file():
        return [path], []
    return [], [f"{path}: no such file or folder"]


def _pair_paths(images: Path, masks: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    problems = []
    by_stem: dict[str, dict[str, Path]] = {}
    for kind, folder in (("image", images), ("mask", masks)):
        paths, missing = _listed(folder, kind)
        problems += missing
        by_stem[kind] = _by_stem(paths, kind, problems)
    for stem in sorted(set(by_stem["image"]) - set(by_stem["mask"])):
        problems.append(f"{by_stem['image'][stem]}: no mask named {stem}.* in {masks}")
    for stem in sorted(set(by_stem["mask"]) - set(by_stem["image"])):
        problems.append(f"{by_stem['mask'][stem]}: no image named {stem}.* in {images}")
    paired = {s: (by_stem["image"][s], by_stem["mask"][s]) for s in set(by_stem["image"]) & set(by_stem["mask"])}
    if not paired and not problems:
        problems.append(f"{images}: no image files (TIFF, PNG, DM3/DM4/EMD) found")
    return dict(sorted(paired.items())), problems


def _by_stem(paths: list[Path], kind: str, problems: list[str]) -> dict[str, Path]:
    """Files by name without suffix (how images, masks and class maps pair up); a name twice is a problem."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.stem in found:
            problems.append(f"{path}: two {kind}s named {path.stem!r} ({found[path.stem].name})")
        found[path.stem] = path
    return found


def _load_pair(
    name: str, paths: tuple[Path, Path], foreground: frozenset[int] | None, pixel_size_nm: float | None
) -> Pair:
    image = read_image(paths[0])
    if is_roi_file(paths[1]):
        return Pair(name, _with_pixel_size(image, pixel_size_nm), _roi_mask(paths[1], image.data.shape), paths[1], ())
    mask, labels = read_mask_and_labels(paths[1], foreground)
    if mask.shape != image.data.shape:
        raise ImageError(paths[1], f"mask shape {mask.shape} differs from its image's {image.data.shape}")
    return Pair(name, _with_pixel_size(image, pixel_size_nm), mask, paths[1], labels)


def _with_pixel_size(image: Micrograph, pixel_size_nm: float | None) -> Micrograph:
    return image if pixel_size_nm is None else Micrograph(image.data, pixel_size_nm, image.path)


def _roi_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels ImageJ fills for the ROIs. A ROI wholly outside the image is refused by name: the RoiSet was
    most likely saved over another (larger) image; one that reaches past the edge is clipped, as ImageJ clips it."""
    rois = read_rois(path)
    h, w = shape
    outside = [roi.name or f"#{k}" for k, roi in enumerate(rois, 1) if _outside(roi, h, w)]
    if outside:
        raise ImageError(path, f"ROIs outside the {w} x {h} px image: {', '.join(outside)}; a RoiSet of another image?")
    return rois_to_labels(rois, (h, w)) > 0


def _outside(roi: ImagejRoi, h: int, w: int) -> bool:
    return roi.right <= 0 or roi.bottom <= 0 or roi.left >= w or roi.top >= h


def _out_problems(out: Path, force: bool) -> list[str]:
    """The current folder (or one above it) cannot be swapped for a new one; a folder holding anything but a
    dataset's entries is not one ncseg wrote, and --force must not delete it (a project root with its .git)."""
    if Path.cwd().is_relative_to(out.resolve()):
        return [f"--out {_shown(out)}: is the current folder or holds it; name a folder to create, e.g. --out data/raw"]
    if not out.exists():
        return []
    if not out.is_dir():
        return [f"--out {_shown(out)}: is a file, not a folder"]
    held = sorted(path.name for path in out.iterdir())
    if foreign := [name for name in held if name not in DATASET_ENTRIES]:
        return [
            f"--out {_shown(out)}: holds {first_few(foreign)}, not a dataset folder ncseg wrote (which holds only "
            f"{', '.join(DATASET_ENTRIES)}); --force replaces only such a folder: choose a new or an empty one"
        ]
    return [f"{out}: already holds data; pass --force to replace it"] if held and not force else []


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
    empty = _empty_masks(loaded, foreground)
    if loaded and len(empty) == len(loaded):
        option = f" with --foreground {_labels(foreground)}" if foreground else ""
        return [f"every mask is empty{option}; nothing to learn from", *empty], []
    return [], [f"{line}; imported as an image without NCs" for line in empty] + _absent_labels(loaded, foreground)


def _empty_masks(loaded: list[Pair], foreground: frozenset[int] | None) -> list[str]:
    return [_why_empty(pair, foreground) for pair in loaded if not pair.mask.any()]


def _why_empty(pair: Pair, foreground: frozenset[int] | None) -> str:
    """Named with the labels the file holds: '0, 255' under --foreground 7 says the option is wrong."""
    if is_roi_file(pair.mask_path):
        return f"{pair.mask_path}: holds no ROI"
    if foreground:
        wanted, found = _labels(foreground), _labels(pair.labels)
        return f"{pair.mask_path}: none of the --foreground labels {wanted} occurs (labels found: {found})"
    return f"{pair.mask_path}: the mask marks no NC (all pixels 0)"


def _absent_labels(loaded: list[Pair], foreground: frozenset[int] | None) -> list[str]:
    """A --foreground label that no mask holds is likely a typo (1,7 for 1,2), though a subset may lack a type.
    ROI files hold no labels (--foreground is for label maps), so only raster masks are asked."""
    rasters = [pair for pair in loaded if not is_roi_file(pair.mask_path)]
    found = {label for pair in rasters for label in pair.labels}
    absent = (foreground or frozenset()) - found
    if not absent or not rasters:
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
    group_column: str = GROUP,
    pixel_size_nm: float | None = None,
    classes: Path | None = None,
    force: bool = False,
) -> ImportResult:
    """Validate every pair, then write out/images, out/masks (0/255), out/groups.csv and, from `classes` (a folder
    of per-pixel class maps named like the images, for the auxiliary head), out/classes in one swap."""
    paired, problems = _pair_paths(images, masks)
    problems += _overlapping_out(out, [images, masks, *([classes] if classes else [])], groups)
    problems += _option_problems(foreground, pixel_size_nm) + _out_problems(out, force)
    loaded = _load_pairs(paired, foreground, pixel_size_nm, problems)
    mask_problems, warnings = _mask_problems(loaded, foreground)
    problems += mask_problems
    group_of: dict[str, str] = {}
    if groups is not None:
        group_of, group_problems, group_warnings = read_group_table(groups, group_column, list(paired))
        problems += group_problems
        warnings += group_warnings
    class_maps = {}
    if classes is not None:
        class_maps = _read_class_maps(_class_map_files(classes, problems), classes, set(paired), loaded, problems)
    if problems:
        raise ImportRefusedError(problems)
    _write(loaded, group_of, class_maps, out)
    return ImportResult(loaded, warnings)


def _class_map_files(source: Path, problems: list[str]) -> dict[str, Path]:
    """The class maps by name: a folder of them, or one file for one image."""
    if source.is_file():
        return {source.stem: source}
    if not source.is_dir():
        problems.append(f"--classes {source}: no such folder")
        return {}
    return _by_stem(list_images(source), "class map", problems)


def _read_class_maps(
    files: dict[str, Path], source: Path, names: set[str], loaded: list[Pair], problems: list[str]
) -> dict[str, np.ndarray]:
    """Each image's class map (same name, same shape); every one missing, extra or unreadable adds a problem.
    `names` are every image's, read or not: a map beside an unreadable image is not "extra"."""
    problems += [
        f"{path}: no image named {stem}.* to go with this class map"
        for stem, path in files.items()
        if stem not in names
    ]
    maps = {}
    for pair in loaded:
        if pair.name not in files:
            problems.append(f"{pair.image.path}: no class map named {pair.name}.* in {source}")
            continue
        try:
            maps[pair.name] = read_class_map(files[pair.name], pair.mask.shape)
        except ImageError as err:
            problems.append(str(err))
    return maps


def _option_problems(foreground: frozenset[int] | None, pixel_size_nm: float | None) -> list[str]:
    problems = []
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        problems.append(f"--pixel-size {pixel_size_nm}: must be a positive number of nm per pixel")
    if foreground and min(foreground) <= 0:
        problems.append(f"--foreground {_labels(foreground)}: NC labels are positive; 0 is the background")
    return problems


def _load_pairs(
    paired: dict[str, tuple[Path, Path]],
    foreground: frozenset[int] | None,
    pixel_size_nm: float | None,
    problems: list[str],
) -> list[Pair]:
    """Every pair that reads and checks; each one that does not adds its problem to `problems`."""
    loaded = []
    for name, paths in paired.items():
        try:
            loaded.append(_load_pair(name, paths, foreground, pixel_size_nm))
        except ImageError as err:
            problems.append(str(err))
    return loaded


def _write(pairs: list[Pair], group_of: dict[str, str], class_maps: dict[str, np.ndarray], out: Path) -> None:
    with staged_folder(out) as staging:
        for pair in pairs:
            write_tiff(image_path(staging, pair.name), pair.image.data, pair.image.pixel_size_nm)
            write_mask(mask_path(staging, pair.name), pair.mask, pair.image.pixel_size_nm)
            if pair.name in class_maps:
                write_tiff(class_map_path(staging, pair.name), class_maps[pair.name], pair.image.pixel_size_nm)
        if group_of:
            write_groups(staging, {p.name: group_of[p.name] for p in pairs})


def add_to_dataset(
    images: Path,
    masks: Path,
    raw: Path,
    *,
    group: str | None = None,
    foreground: frozenset[int] | None = None,
    pixel_size_nm: float | None = None,
    classes: Path | None = None,
    labels: LabelSet | None = None,
) -> ImportResult:
    """Append image/mask pairs (corrected predictions) to the raw folder `raw`, all or nothing.

    The checks of `import_dataset`, and a name already in `raw` is refused: names identify images in the folds and
    the group manifest, and overwriting a training image's mask should be a deliberate re-import. `group` puts every
    added image in one group (the specimen region it shows), so CV keeps them together and with the raw images of
    that group; without it each added image is its own group. A mask without NCs is only warned about here: a field
    where the model saw NCs that are not there is what a correction teaches. Validation and the swap run under the
    raw folder's lock, so two adds cannot interleave.

    Where the raw images have class maps (a study of several classes), each added image needs one too, from
    `classes` (a folder named like the images, or one file): its ids within `labels`, its foreground the mask's.
    """
    if not (raw / IMAGES).is_dir():
        raise ImportRefusedError(
            [f"{raw}: no raw data to add to (run `dvc pull` or `ncseg data import` first)"], "data add"
        )
    with folder_lock(raw):
        paired, problems = _pair_paths(images, masks)
        problems += _option_problems(foreground, pixel_size_nm) + _addition_problems(paired, images, raw, group)
        loaded = _load_pairs(paired, foreground, pixel_size_nm, problems)
        class_maps = _added_class_maps(classes, raw, loaded, labels, problems)
        if problems:
            raise ImportRefusedError(problems, "data add")
        _append(loaded, group, raw, class_maps)
    warnings = [f"{line}; added as an image without NCs" for line in _empty_masks(loaded, foreground)]
    return ImportResult(loaded, warnings + _absent_labels(loaded, foreground))


def add_correction(
    image: Micrograph, name: str, answer: np.ndarray, raw: Path, *, group: str | None, labels: LabelSet
) -> ImportResult:
    """One image and its corrected answer, as a viewer holds them (napari: an image layer and the Labels layer the
    user painted), appended to `raw` exactly as `add_to_dataset` appends files: the same checks, all or nothing.

    `answer` is what the model's answer layer holds: a binary study's particle instances (any id > 0 is
    foreground) or a K-class study's class ids. The files are staged in a temporary folder the user never sees.
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise ImportRefusedError([f"{name!r}: not a name for the added image (no folders, not hidden)"], "data add")
    if answer.shape != image.data.shape:
        raise ImportRefusedError([f"{name}: the answer is {answer.shape}, the image {image.data.shape}"], "data add")
    if not labels.is_binary:
        try:
            labels.check_map(answer, f"{name}'s classes")
        except ValueError as err:
            raise ImportRefusedError([str(err)], "data add") from err
    with tempfile.TemporaryDirectory(prefix="ncseg-correction-") as tmp:
        staged = Path(tmp)
        write_tiff(image_path(staged, name), image.data, image.pixel_size_nm)
        write_mask(mask_path(staged, name), answer > 0, image.pixel_size_nm)
        classes = None
        if not labels.is_binary:
            write_tiff(class_map_path(staged, name), answer.astype(np.uint8), image.pixel_size_nm)
            classes = staged / CLASSES
        return add_to_dataset(staged / IMAGES, staged / MASKS, raw, group=group, classes=classes, labels=labels)


def _added_class_maps(
    classes: Path | None, raw: Path, loaded: list[Pair], labels: LabelSet | None, problems: list[str]
) -> dict[str, np.ndarray]:
    """The added images' class maps, where the raw data has them or `classes` gives them; each checked against the
    label set and its own mask. A raw folder with class maps takes no image without one (training needs them all)."""
    has_maps = (raw / CLASSES).is_dir() and bool(list_images(raw / CLASSES))
    if classes is None:
        if has_maps:
            problems.append(f"{raw / CLASSES}: the raw images have class maps; give each added image one (--classes)")
        return {}
    if not has_maps and list_images(raw / IMAGES):
        problems.append(f"--classes {classes}: the raw images in {raw} have no class maps to add these beside")
        return {}
    files = _class_map_files(classes, problems)
    maps = _read_class_maps(files, classes, {p.name for p in loaded}, loaded, problems)
    for pair in loaded:
        if pair.name not in maps:
            continue
        where = str(files[pair.name])
        if labels is not None:
            try:
                labels.check_map(maps[pair.name], where)
            except ValueError as err:
                problems.append(str(err))
        if disagree := int(np.count_nonzero((maps[pair.name] > 0) != pair.mask)):
            problems.append(f"{where}: {disagree} pixels are foreground in it or in {pair.mask_path}, not in both")
    return maps


def _addition_problems(paired: dict[str, tuple[Path, Path]], images: Path, raw: Path, group: str | None) -> list[str]:
    problems = [] if group is None or group.strip() else ["--group: empty; name the specimen region the images show"]
    existing = {path.stem for path in list_images(raw / IMAGES)}
    problems += [
        f"{paths[0]}: an image named {name!r} is already in {raw / IMAGES}; rename the new image"
        for name, paths in paired.items()
        if name in existing
    ]
    if not paired and not problems:
        problems.append(f"{images}: no image files (TIFF, PNG, DM3/DM4/EMD) found")
    return problems


def _append(pairs: list[Pair], group: str | None, raw: Path, class_maps: dict[str, np.ndarray]) -> None:
    """The raw folder rebuilt beside itself (a copy plus the new pairs) and swapped in whole. The group manifest is
    written when there is one or a group is given, every image listed: existing images keep their group (their own
    name where the folder had no manifest, as augment reads it), new ones get `group` or their own name."""
    old_groups, existing = read_groups(raw), [path.stem for path in list_images(raw / IMAGES)]
    with staged_folder(raw) as staging:
        shutil.copytree(raw, staging, dirs_exist_ok=True)
        for pair in pairs:
            write_tiff(image_path(staging, pair.name), pair.image.data, pair.image.pixel_size_nm)
            write_mask(mask_path(staging, pair.name), pair.mask, pair.image.pixel_size_nm)
            if pair.name in class_maps:
                write_tiff(class_map_path(staging, pair.name), class_maps[pair.name], pair.image.pixel_size_nm)
        if old_groups or group is not None:
            added = {p.name: group or p.name for p in pairs}
            write_groups(staging, {n: old_groups.get(n, n) for n in existing} | added)
