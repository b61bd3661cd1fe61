"""ncseg's objects as napari layer data, `(data, keyword arguments, layer type)`, built without importing napari:
what the reader opens and what the widget shows after a segmentation, testable without Qt or a screen.

Every layer is scaled by its image's pixel size in nm (napari's rulers and measurements then read in nm) and
carries `metadata["ncseg"]`: the image it belongs to, its role, and the pixel size, so the widget can find the
answer layer a user corrected and send it back to training with the image it belongs to.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ncseg.data.layout import CLASSES, IMAGES, MASKS
from ncseg.io.images import Micrograph, list_images, read_class_map, read_image, read_mask
from ncseg.labels import LabelSet
from ncseg.predict.outputs import Found, particle_table
from ncseg.predict.segment import Segmentation

LayerData = tuple[np.ndarray, dict[str, Any], str]
META = "ncseg"
IMAGE, ANSWER, PARTICLES, UNCERTAINTY, TRUTH = "image", "answer", "particles", "uncertainty", "truth"
KEPT = "kept"  # an answer holding a correction not yet added, kept aside when the image is segmented again


def _placed(
    name: str, role: str, image: str, pixel_size_nm: float | None, classes: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """A layer's name, its ncseg metadata (`classes`: what an answer's ids mean) and, where the pixel size is
    known, its scale in nm."""
    meta = {"image": image, "role": role, "pixel_size_nm": pixel_size_nm, "classes": list(classes)}
    kwargs: dict[str, Any] = {"name": name, "metadata": {META: meta}}
    if pixel_size_nm:
        kwargs |= {"scale": (pixel_size_nm, pixel_size_nm), "units": ("nm", "nm")}
    return kwargs | extra


def micrograph_layer(image: Micrograph) -> LayerData:
    name = image.path.stem
    return image.data, _placed(name, IMAGE, name, image.pixel_size_nm), "image"


def class_colours(labels: LabelSet) -> dict[int | None, str]:
    """The label set's colours as a napari label colormap; the background (and any id outside the set) clear."""
    return {k: c.colour for k, c in enumerate(labels.classes) if k} | {0: "transparent", None: "transparent"}


def segmentation_layers(seg: Segmentation, found: Found) -> list[LayerData]:
    """The answer for one image: the layer to correct (a binary model's particles, or a K-class model's class map),
    each particle class's instances with its particle table as the layer's features (hover a particle to read its
    diameter in nm), and the uncertainty."""
    name, px, classes = seg.image.path.stem, seg.pixel_size_nm, seg.labels.names
    layers: list[LayerData] = []
    if not seg.labels.is_binary:
        colours = class_colours(seg.labels)
        placed = _placed(f"{name} classes", ANSWER, name, px, classes, colormap=colours)
        layers.append((seg.classes, _as_answered(placed, seg.classes), "labels"))
    for k, each in found.items():
        rows, columns = particle_table(seg, each, k)
        features = {"index": [r["label"] for r in rows]} | {c: [r[c] for r in rows] for c in columns}
        role = ANSWER if seg.labels.is_binary else PARTICLES
        title = name if seg.labels.is_binary else f"{name} {seg.labels.names[k]}"
        placed = _placed(f"{title} particles", role, name, px, classes, features=features)
        layers.append((each.labels, _as_answered(placed, each.labels) if role == ANSWER else placed, "labels"))
    style = {"colormap": "inferno", "blending": "additive", "opacity": 0.5, "visible": False}
    layers.append((seg.uncertainty, _placed(f"{name} uncertainty", UNCERTAINTY, name, px, **style), "image"))
    return layers


def digest(data: np.ndarray) -> str:
    """A fingerprint of an answer's labels: what tells a corrected answer from the one the model gave."""
    array = np.ascontiguousarray(data)
    h = hashlib.blake2b(str((array.dtype, array.shape)).encode(), digest_size=16)
    h.update(array.data)  # the buffer itself: no copy of a large montage's labels
    return h.hexdigest()


def _as_answered(kwargs: dict[str, Any], data: np.ndarray) -> dict[str, Any]:
    mark_saved(kwargs["metadata"], data)  # as the model answered: nothing to lose yet
    return kwargs


def unsaved(metadata: dict[str, Any], data: np.ndarray) -> bool:
    """Whether an answer layer holds paint that neither the model gave nor `add` sent to the training data."""
    saved = (metadata.get(META) or {}).get("saved")
    return saved is not None and digest(data) != saved


def mark_saved(metadata: dict[str, Any], data: np.ndarray) -> None:
    """After `add`: the answer as sent is safe in the training data."""
    metadata[META]["saved"] = digest(data)


def kept_aside(metadata: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The name and metadata of an answer with an unsaved correction once a new answer takes its place: it stays
    in the viewer under its own name, no longer the image's answer, so the user can still compare it, or select it
    and add it."""
    meta = dict(metadata[META]) | {"role": KEPT}
    return f"{name} (unsaved correction)", dict(metadata) | {META: meta}


def dataset_layers(folder: Path) -> list[LayerData]:
    """A dataset folder (data/raw's layout: images/, masks/, classes/) as each image with its mask and class map,
    or a plain folder of micrographs as images."""
    images = folder / IMAGES if (folder / IMAGES).is_dir() else folder
    layers: list[LayerData] = []
    for path in list_images(images):
        image = read_image(path)
        layers.append(micrograph_layer(image))
        px, name = image.pixel_size_nm, path.stem
        if (mask := folder / MASKS / f"{name}.tif").is_file():
            truth = read_mask(mask).astype(np.uint8)
            layers.append((truth, _placed(f"{name} mask", TRUTH, name, px, opacity=0.5), "labels"))
        if (classes := folder / CLASSES / f"{name}.tif").is_file():
            class_map = read_class_map(classes, image.data.shape)
            layers.append((class_map, _placed(f"{name} expert classes", TRUTH, name, px, opacity=0.5), "labels"))
    return layers


def role_of(metadata: dict[str, Any], image: str) -> str | None:
    """A layer's role for the image named `image` (None: not one of its layers)."""
    meta = metadata.get(META) or {}
    return meta.get("role") if meta.get("image") == image else None


def particle_rows(layers: list[LayerData], columns: tuple[str, ...]) -> list[list[Any]]:
    """Every particle layer's table, `columns` only, each row led by its layer's name (the features hold all)."""
    rows = []
    for _, kwargs, _ in layers:
        if features := kwargs.get("features"):
            rows += [[kwargs["name"], *(features[c][i] for c in columns)] for i in range(len(features["index"]))]
    return rows
