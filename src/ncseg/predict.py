"""`ncseg predict`: a registered model over a folder of micrographs -> masks, overlays, particle tables in nm.

Each image's outputs are written (atomically) as soon as it is done; an unreadable image is reported and
skipped, so one bad file never costs the results of the others. The model runs in this process on the code the
server runs, without the server's request limits: a detector frame or montage of 8k-16k px is tiled like any image.
The particle settings come with the model, so a model folder works outside any project.
"""

from __future__ import annotations

import csv
import errno
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from ncseg import figures
from ncseg.config import ConfigError, Params, ParticleParams, apply_override
from ncseg.inference.tta import TRANSFORMS
from ncseg.interop.imagej import write_roiset
from ncseg.io.images import (
    IMAGE_SUFFIXES,
    ImageError,
    Micrograph,
    list_images,
    read_image,
    write_mask,
    write_tiff,
)
from ncseg.io.tables import write_csv
from ncseg.normalization import normalize
from ncseg.particles import Particle, measure, split
from ncseg.records import RecordError
from ncseg.uncertainty import PARTICLE_COLUMNS, image_score, particle_scores

log = logging.getLogger(__name__)
SUMMARY = "summary.csv"


@dataclass
class Report:
    done: list[dict] = field(default_factory=list)  # one summary row per image
    failed: list[str] = field(default_factory=list)  # "path: problem"
    particles: list[Particle] = field(default_factory=list)


class PredictRefusedError(ValueError):
    """Settings or inputs that would give wrong or lost results; found before any model is loaded."""

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
    if tta is not None and tta not in TRANSFORMS:
        problems.append(f"--tta {tta}: must be one of {', '.join(TRANSFORMS)}")
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


def load_segmenter(model_uri: str, tracking_uri: str) -> Segmenter:
    """The model, or a ModelLookupError in one line: no store here, no such model or alias, an unreadable folder.
    Nothing is created on the way (no store, no experiment)."""
    import mlflow

    from ncseg.registry.lookup import ModelLookupError, check_model_uri

    check_model_uri(model_uri, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return Segmenter(model_uri)
    except (MlflowException, OSError, RecordError) as err:  # RecordError: weights changed after registration
        raise ModelLookupError(f"{model_uri}: cannot load the model ({str(err).splitlines()[0]})") from err


def store_uri(params: Params | None, root: Path) -> str:
    """Where models:/ and runs:/ URIs are looked up: as the project's commands do where there is a params.yaml,
    else MLFLOW_TRACKING_URI or the store of the folder predict runs in (a model folder needs none)."""
    from ncseg import tracking

    if params is not None:
        return tracking.tracking_uri(params, root)
    return os.environ.get("MLFLOW_TRACKING_URI") or tracking.local_uri(root)


class Segmenter:
    """A registered model run in this process by the code the server runs (its probability, uncertainty and
    out-of-distribution check), but not through the server's request: its size limits bound what one request may
    cost a shared server, and its file round trip would copy the image; here an image of any size is tiled in the
    memory of its answers and a batch of tiles."""

    def __init__(self, model_uri: str) -> None:
        import mlflow

        from ncseg.registry.lookup import ModelLookupError
        from ncseg.registry.pyfunc import NcSegmenter

        served = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        if not isinstance(served, NcSegmenter):
            raise ModelLookupError(f"{model_uri}: not an ncseg model (its Python model is {type(served).__name__})")
        self.served = served
        self.description = describe_model(model_uri)
        self.threshold = served.config.threshold  # the served default (the signature's)
        self.particles = served.config.particles  # None: registered before the settings travelled with it

    def probability(self, image: np.ndarray, tta: str | None = None) -> np.ndarray:
        return self.served.probability(image, tta or self.served.config.tta)

    def uncertainty(
        self, image: np.ndarray, pixel_size_nm: float | None, tta: str | None = None
    ) -> tuple[np.ndarray, str]:
        """The per-pixel uncertainty map and why the image is out of the training domain ('' if it is not), as the
        served model answers `output=uncertainty` with the image's pixel size."""
        ood = "; ".join(self.served.out_of_domain(image, pixel_size_nm))
        return self.served.uncertainty(image, tta or self.served.config.tta), ood


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


def _write_image_outputs(
    out: Path,
    image: Micrograph,
    prob: np.ndarray,
    mask: np.ndarray,
    labels: np.ndarray,
    particles: list[Particle],
    save_probability: bool,
    rois: bool,
    uncertainty: np.ndarray,
) -> None:
    """Per image: the mask, the instance labels (ids = the CSV's `label`), the overlay, the particle table, and
    on request the probability map and an ImageJ RoiSet (ROI names = the same ids)."""
    stem = image.path.stem
    write_mask(out / "masks" / f"{stem}.tif", mask, image.pixel_size_nm)
    write_tiff(out / "labels" / f"{stem}.tif", labels.astype(np.uint16), image.pixel_size_nm)
    if rois:
        write_roiset(out / "rois" / f"{stem}.zip", labels)
    if save_probability:
        write_tiff(out / "probability" / f"{stem}.tif", prob, image.pixel_size_nm)  # float32, written as it is
    write_tiff(out / "uncertainty" / f"{stem}.tif", uncertainty, image.pixel_size_nm)
    write_csv(out / "particles" / f"{stem}.csv", *particle_table(particles, labels, prob, uncertainty))


def particle_table(
    particles: list[Particle], labels: np.ndarray, prob: np.ndarray, uncertainty: np.ndarray
) -> tuple[list[dict], list[str]]:
    """Rows and columns of a particle CSV: each particle's measurements, then its confidence and boundary
    uncertainty (ncseg.uncertainty)."""
    scores = particle_scores(labels, prob, uncertainty)
    return [p.row() | scores[p.label] for p in particles], [*Particle.__dataclass_fields__, *PARTICLE_COLUMNS]


def doubt_columns(image: Micrograph, uncertainty: np.ndarray, mask: np.ndarray, ood: str) -> dict:
    """summary.csv's `uncertainty` (what `ncseg review` ranks by) and `ood` (why the image is unlike the training
    data, '' if it is not); an out-of-domain image is also a warning line, since a table cell is easily missed."""
    if ood:
        log.warning("%s: unlike the model's training data, check its mask: %s", image.path, ood)
    return {"uncertainty": round(image_score(uncertainty, mask), 4), "ood": ood}


def describe_model(model_uri: str) -> str:
    """'name v3 (@champion)' for a registered model, the alias resolved so a summary names the version that ran
    (an alias moves on); the URI itself for anything else, or where the registry cannot say."""
    import mlflow

    match = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", model_uri)
    if not match:
        return model_uri
    name, alias, version = match.groups()
    if alias is None:
        return f"{name} v{version}"
    try:
        return f"{name} v{mlflow.MlflowClient().get_model_version_by_alias(name, alias).version} (@{alias})"
    except MlflowException:
        return model_uri


def write_overlay(out: Path, image: Micrograph, labels: np.ndarray, particles: list[Particle], caption: str) -> None:
    """overlays/<stem>.png: outlines and ids over the image, titled with what made them."""
    border = sum(p.touches_border for p in particles)
    title = f"{image.path.name}: {len(particles)} particles, {border} cut by the border\n{caption}"
    figures.particle_overlay(
        out / "overlays" / f"{image.path.stem}.png",
        normalize(image.data),
        labels,
        particles,
        image.pixel_size_nm,
        title,
    )


def summary_row(image: Micrograph, mask: np.ndarray, particles: list[Particle]) -> dict:
    edges = [p.edge_length_nm for p in particles if p.edge_length_nm is not None and not p.touches_border]
    return {
        "image": image.path.name,
        "pixel_size_nm": image.pixel_size_nm if image.pixel_size_nm else "",
        "n_particles": len(particles),
        "n_inside": sum(not p.touches_border for p in particles),
        "n_border_excluded": sum(p.touches_border for p in particles),  # cut by the field: left out of sizes
        "nc_area_fraction": round(float(mask.mean()), 4),
        "edge_nm_mean": round(float(np.mean(edges)), 3) if edges else "",
        "edge_nm_std": round(float(np.std(edges)), 3) if len(edges) > 1 else "",
    }


def run(
    segmenter: Segmenter,
    files: list[Path],
    out: Path,
    particle_params: ParticleParams,
    *,
    threshold: float | None = None,
    pixel_size_nm: float | None = None,
    save_probability: bool = False,
    rois: bool = False,
    tta: str | None = None,
    on_image: Callable[[Path], None] | None = None,
) -> Report:
    """Segment every file; a file that cannot be read is reported and the others go on. `tta` overrides the
    model's default test-time augmentation."""
    report = Report()
    cut = threshold if threshold is not None else segmenter.threshold
    caption = f"{segmenter.description}, threshold {cut:g}"  # on every figure: what made it
    for path in files:
        try:
            image = read_image(path)
            if pixel_size_nm is not None:
                image = Micrograph(image.data, pixel_size_nm, image.path)
            prob = segmenter.probability(image.data, tta)
            uncertainty, ood = segmenter.uncertainty(image.data, image.pixel_size_nm, tta)
        except (ImageError, ValueError, MlflowException) as err:
            report.failed.append(str(err) if str(path) in str(err) else f"{path}: {err}")
        else:
            mask = prob > cut
            labels = split(mask, image.pixel_size_nm, particle_params)
            particles = measure(labels, image.pixel_size_nm, image.data)
            _write_image_outputs(out, image, prob, mask, labels, particles, save_probability, rois, uncertainty)
            write_overlay(out, image, labels, particles, caption)
            report.done.append(
                summary_row(image, mask, particles)
                | {"model": segmenter.description, "threshold": cut}
                | doubt_columns(image, uncertainty, mask, ood)
            )
            report.particles += particles
        if on_image:
            on_image(path)
    if report.done:
        write_summary(out / SUMMARY, report.done)
        figures.size_histogram(out / "size_distribution.png", report.particles, caption)
    return report


def read_summary(path: Path) -> tuple[list[dict], list[str]]:
    """The rows and columns of an earlier run's summary.csv (none where there is none), or a ValueError naming it."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, columns = list(reader), list(reader.fieldnames or [])
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from err
    if "image" not in columns:
        raise ValueError(f"{path}: not a summary `ncseg predict` wrote (no 'image' column)")
    return [{k: v for k, v in row.items() if k is not None} for row in rows], columns


def write_summary(path: Path, rows: list[dict]) -> None:
    """summary.csv over every image predicted into this folder: an image predicted again replaces its row (its
    outputs, named by stem, were just overwritten), the rows of earlier runs stay with their masks and RoiSets, so
    `ncseg review` still lists them. Columns of older runs that this one lacks are kept (empty here)."""
    earlier, columns = read_summary(path)
    again = {Path(row["image"]).stem for row in rows}
    kept = [row for row in earlier if Path(row["image"]).stem not in again]
    write_csv(path, kept + rows, list(dict.fromkeys([*rows[0], *columns])))
