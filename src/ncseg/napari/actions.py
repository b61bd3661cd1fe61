"""What the widget's buttons do, without Qt: each is a library call the tests make too. The widget runs them off
the UI thread and turns their errors into one line on screen.

A project is a folder with a params.yaml (the study's): it says where the registry is, how particles are cut and
measured, the label set, and where the raw data lives; its `dvc repro` is the retraining.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncseg.config import Params, load_params
from ncseg.data.importer import ImportResult, add_correction
from ncseg.io.images import Micrograph
from ncseg.napari.layers import META, LayerData, segmentation_layers
from ncseg.predict import load_segmenter, particle_settings, store_uri
from ncseg.predict.outputs import Found, instances
from ncseg.predict.segment import Segmentation, Segmenter
from ncseg.registry.lookup import describe_model
from ncseg.registry.policy import CHAMPION

NANOMETRE = ("nm", "nanometer")
LENGTH_ERRORS = (AttributeError, TypeError, ValueError)  # not a pint unit, or not a length (pixel, dimensionless)


@dataclass(frozen=True)
class Project:
    """A study folder and its parameters; `None` params outside a project (the model then carries its settings)."""

    folder: Path
    params: Params | None

    @classmethod
    def at(cls, params_file: Path) -> Project:
        """The project whose params.yaml is `params_file`; a ConfigError in one line where it does not read."""
        params_file = params_file.resolve()
        return cls(params_file.parent, load_params(params_file) if params_file.is_file() else None)

    def default_model(self) -> str:
        return f"models:/{self.params.registry.model_name}@{CHAMPION}" if self.params else ""

    def study(self) -> Params:
        if self.params is None:
            raise ValueError(f"{self.folder}: no params.yaml, so no training data to add to (pick the project's)")
        return self.params

    def raw(self) -> Path:
        raw = self.study().paths.raw
        return raw if raw.is_absolute() else self.folder / raw


def micrograph_of(data: Any, name: str, metadata: dict, scale: tuple[float, ...], units: tuple[Any, ...]) -> Micrograph:
    """An image layer as the micrograph ncseg reads from a file: its pixels, and its pixel size in nm from ncseg's
    reader or from a layer scaled in a length unit (none otherwise: sizes are then in px). The layer's name is the
    name the image gets in the training data, so it must be one."""
    pixels = np.asarray(data)
    if pixels.ndim != 2:
        raise ValueError(f"{name}: a {pixels.ndim}-D layer; ncseg segments 2-D greyscale micrographs")
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"{name!r}: rename the layer; its name becomes the image's file name (no folders)")
    pixel_size = (metadata.get(META) or {}).get("pixel_size_nm")
    if pixel_size is None and units and (nm := _nm_per_unit(units[-1])) is not None:
        pixel_size = float(scale[-1]) * nm
    return Micrograph(pixels, pixel_size, Path(f"{name}.tif"))


def _nm_per_unit(unit: Any) -> float | None:
    """How many nm one `unit` is (napari's layer units are pint units); None for pixels or no unit."""
    if str(unit) in NANOMETRE:
        return 1.0
    try:
        return float((1 * unit).to("nanometer").magnitude)
    except LENGTH_ERRORS:
        return None


@dataclass(frozen=True)
class Answer:
    segmentation: Segmentation
    found: Found
    layers: list[LayerData]


def segment(segmenter: Segmenter, image: Micrograph, project: Project) -> Answer:
    """One image through the model, its particles cut with the model's own settings (the project's for a model
    registered before they travelled with it), as layers."""
    particles = particle_settings(segmenter.particles, project.params, [])
    seg = segmenter.segment(image)
    found = instances(seg, particles)
    return Answer(seg, found, segmentation_layers(seg, found))


class Models:
    """Models loaded once, and loaded again when what a URI names changes: an alias a retraining moved to a new
    version, a model folder `dvc repro` rewrote."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, Path], tuple[str, Segmenter]] = {}

    def get(self, model_uri: str, project: Project) -> Segmenter:
        """The model behind `model_uri`, looked up in the project's registry (as `ncseg predict` run there would)."""
        key, uri = (model_uri, project.folder), store_uri(project.params, project.folder)
        held = self._held.get(key)
        if held is not None and held[0] == _identity(model_uri, uri):
            return held[1]
        segmenter = load_segmenter(model_uri, uri)  # first: it names a missing store without creating one
        self._held[key] = (_identity(model_uri, uri), segmenter)
        return segmenter


def _identity(model_uri: str, tracking_uri: str) -> str:
    """What `model_uri` points at now: the registered version an alias resolves to, or a folder's last change."""
    if model_uri.startswith(("models:/", "runs:/")):
        return describe_model(model_uri, tracking_uri)
    folder = Path(model_uri)
    return str(max((f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()), default=0))


def add(
    project: Project, image: Micrograph, answer: np.ndarray, answered: tuple[str, ...], group: str | None
) -> ImportResult:
    """The image and its corrected answer appended to the project's raw data (`ncseg data add`: all or nothing).
    `answered` are the classes of the model that answered (the answer layer's): ids mean those classes, so a
    project of other classes is refused rather than fed a binary answer's particle ids as classes (two binary
    sets are one foreground, whatever they call it)."""
    labels = project.study().labels
    if not (labels.is_binary and len(answered) == 2) and tuple(answered) != labels.names:
        raise ValueError(
            f"{image.path.stem}: the answer has the model's classes ({', '.join(answered)}), but the project "
            f"{project.folder} trains on {', '.join(labels.names)}: segment with one of its models"
        )
    return add_correction(image, image.path.stem, answer, project.raw(), group=group, labels=labels)


def retrain(project: Project) -> str:
    """`dvc repro` in the project, with this Python's scripts first on PATH (the stages call `ncseg`, which a
    napari started from a launcher may not have); the last line it printed, or a RuntimeError with its error."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=project.folder, env=env, capture_output=True, text=True
    )
    if done.returncode:
        why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"dvc repro in {project.folder} failed (exit {done.returncode}): {why}")
    return (done.stdout.strip().splitlines() or ["dvc repro finished"])[-1]
