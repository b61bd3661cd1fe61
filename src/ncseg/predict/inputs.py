"""What `ncseg predict` is asked to do, checked before a model is loaded: the image files, the options, the output
folder and the settings particles are cut with. Minutes of inference must not end in empty masks, outputs that
overwrite each other, a lost calibration or a traceback."""

from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from ncseg.config import TTA, ConfigError, Params, ParticleParams, apply_override
from ncseg.io.images import IMAGE_SUFFIXES, list_images
from ncseg.predict.outputs import SUMMARY, read_summary


class PredictRefusedError(ValueError):
    """Settings or inputs that would give wrong or lost results; found before any image is segmented."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("nothing segmented:\n  " + "\n  ".join(problems))
        self.problems = problems


def check_settings(out: Path, threshold: float | None, pixel_size_nm: float | None, tta: str | None) -> list[str]:
    """What is wrong with the options, before minutes of inference would end in empty masks, a lost
    calibration or a traceback."""
    problems = []
    if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
        problems.append(f"--threshold {threshold}: must lie strictly between 0 and 1 (0.75 is the study's)")
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        problems.append(f"--pixel-size {pixel_size_nm}: must be a positive number of nm per pixel")
    if tta is not None and tta not in get_args(TTA):  # the names, without importing torch for them
        problems.append(f"--tta {tta}: must be one of {', '.join(get_args(TTA))}")
    if (link := _dangling(out)) is not None:
        problems.append(f"--out {out}: {link} is a symbolic link to nothing (a loop, or its target is missing)")
    elif out.exists() and not out.is_dir():
        problems.append(f"--out {out}: is a file, not a folder")
    elif (why := _unwritable(out)) is not None:
        problems.append(f"--out {out}: cannot be written ({why})")
    else:
        try:
            read_summary(out / SUMMARY)
        except ValueError as err:
            problems.append(f"--out {out}: {err}; its rows are kept, so move it away or choose another --out")
    return problems


def _dangling(path: Path) -> Path | None:
    """The first of `path` and its folders that is a symbolic link leading nowhere: mkdir there fails with
    "Too many levels of symbolic links" or "File exists" after all the images were segmented."""
    return next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)


def _is_loop(path: Path) -> bool:
    try:
        path.stat()
    except OSError as err:
        return err.errno == errno.ELOOP
    return False


def _unwritable(out: Path) -> str | None:
    """Why `out` cannot be made or written in, or None. Probed with a nameless temporary file in the nearest existing
    folder: permission bits do not tell for root, read-only mounts, /proc or /sys."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None:
        return None  # not even the working folder exists: the first write will say so
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as err:
        return f"{existing} is not a writable folder: {err.strerror}"


def output_collisions(files: list[Path]) -> list[str]:
    """Inputs that would write the same outputs: results are named by file stem (masks/<stem>.tif, …)."""
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    return [
        f"{', '.join(map(str, paths))}: would all be written as {stem}.*; rename them or run them separately"
        for stem, paths in by_stem.items()
        if len(paths) > 1
    ]


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """The image files named or held by `inputs`, each once: a folder and a file in it name that file twice, which
    is one input, not two whose outputs collide."""
    files: dict[Path, Path] = {}
    for path in inputs:
        if _is_loop(path):  # resolving it below would end in pathlib's RuntimeError
            raise ValueError(
                f"{path}: a loop of symbolic links (it leads back to itself); point it at an image or folder"
            )
        if path.is_dir():
            found = list_images(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES or not path.exists():
            found = [path]  # missing files are reported per image, with the rest still processed
        else:
            raise ValueError(f"{path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))}) or folder")
        for file in found:
            files.setdefault(file.resolve(), file)
    return list(files.values())


def store_uri(params: Params | None, root: Path) -> str:
    """Where models:/ and runs:/ URIs are looked up: as the project's commands do where there is a params.yaml,
    else MLFLOW_TRACKING_URI or the store of the folder predict runs in (a model folder needs none)."""
    from ncseg.tracking import store

    if params is not None:
        return store.tracking_uri(params, root)
    return os.environ.get("MLFLOW_TRACKING_URI") or store.local_uri(root)


def particle_settings(carried: ParticleParams | None, project: Params | None, overrides: list[str]) -> ParticleParams:
    """How particles are cut and measured: the settings the model was registered with (so a model folder works
    anywhere), with any `-S particles.KEY=VALUE` applied; for a model registered before they travelled with it, the
    project's params.yaml."""
    if carried is None:
        if project is None:
            raise ConfigError(
                "the model carries no particle settings (registered before ncseg recorded them): run in its project "
                "folder or pass --params PARAMS.yaml"
            )
        return project.particles
    tree = {"particles": carried.model_dump()}
    for assignment in overrides:
        if assignment.startswith("particles."):
            apply_override(tree, assignment)
        elif project is None:
            raise ConfigError(f"-S {assignment}: no params.yaml here to set it in (only particles.* apply)")
    try:
        return ParticleParams.model_validate(tree["particles"])
    except ValidationError as err:
        raise ConfigError(f"-S particles: {err}") from err
