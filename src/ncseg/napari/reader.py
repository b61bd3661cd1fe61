"""napari's reader hook: a micrograph (TIFF, PNG, DM3/DM4, EMD), a dataset folder, or a DVC-tracked dataset (its
`.dvc` file) opened as layers scaled by the pixel size in nm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from ncseg.data.layout import IMAGES
from ncseg.io.images import IMAGE_SUFFIXES, list_images, read_image
from ncseg.napari.layers import LayerData, dataset_layers, micrograph_layer

Reader = Callable[[str | list[str]], list[LayerData]]


def get_reader(path: str | list[str]) -> Reader | None:
    """The reader for `path`, or None where it is nothing ncseg opens (napari then asks other plugins)."""
    paths = [Path(p) for p in ([path] if isinstance(path, str) else path)]
    if all(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
        return read_micrographs
    if len(paths) == 1 and paths[0].suffix == ".dvc" and paths[0].is_file():
        return read_tracked
    if len(paths) == 1 and paths[0].is_dir() and ((paths[0] / IMAGES).is_dir() or list_images(paths[0])):
        return read_folder
    return None


def read_micrographs(path: str | list[str]) -> list[LayerData]:
    return [micrograph_layer(read_image(p)) for p in ([path] if isinstance(path, str) else path)]


def read_folder(path: str | list[str]) -> list[LayerData]:
    return dataset_layers(Path(path if isinstance(path, str) else path[0]))


def read_tracked(path: str | list[str]) -> list[LayerData]:
    """The folder a `.dvc` file tracks, as it is in the workspace; a clear error where it has not been pulled."""
    dvc_file = Path(path if isinstance(path, str) else path[0])
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    if not outs or "path" not in outs[0]:
        raise ValueError(f"{dvc_file}: names no tracked output")
    folder = dvc_file.parent / outs[0]["path"]
    if not folder.is_dir():
        raise ValueError(f"{dvc_file}: {folder} is not in the workspace; run `dvc pull {dvc_file.name}` first")
    return dataset_layers(folder)
