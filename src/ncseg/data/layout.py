"""The dataset folder layout, in one place, so the writers (`data synth`, `data import`/`add`, `data augment`) and
the readers (training, the MLflow dataset record) cannot drift apart. A dataset folder (data/raw, data/augmented)
holds:

    images/NAME.tif    the micrographs
    masks/NAME.tif     their NC masks (0/255)
    classes/NAME.tif   optional: per-pixel class maps, the auxiliary head's labels (`data import --classes`)
    groups.csv         optional in a raw folder: name,group, the specimen region each image shows
    particles.csv      in `data synth`'s folder: the generator's truth, one row per NC
    manifest.csv       in an augmented folder: name,source,group,rotation_deg, one row per image, in training order
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from ncseg.io.tables import write_csv

IMAGES, MASKS, CLASSES = "images", "masks", "classes"
GROUPS = "groups.csv"
GROUP = "group"  # groups.csv's column (and the manifest's): the specimen region, what cross-validation splits on
PARTICLES = "particles.csv"
MANIFEST = "manifest.csv"
# What the dataset folders ncseg writes hold. `--force` replaces such a folder only: one holding anything else (a
# project root, a folder of the user's) is not ncseg's to delete.
DATASET_ENTRIES = (IMAGES, MASKS, CLASSES, GROUPS, MANIFEST, PARTICLES)


def image_path(folder: Path, name: str) -> Path:
    return folder / IMAGES / f"{name}.tif"


def mask_path(folder: Path, name: str) -> Path:
    return folder / MASKS / f"{name}.tif"


def class_map_path(folder: Path, name: str) -> Path:
    return folder / CLASSES / f"{name}.tif"


@dataclass(frozen=True)
class Entry:
    """One image of an augmented folder: the raw image it was turned from, by how much, and the group CV keeps it
    in (its source's)."""

    name: str
    source: str
    group: str
    rotation_deg: int


def write_manifest(folder: Path, entries: list[Entry]) -> None:
    write_csv(folder / MANIFEST, [asdict(e) for e in entries], list(Entry.__dataclass_fields__))


def read_manifest(folder: Path) -> list[Entry]:
    with (folder / MANIFEST).open(newline="") as fh:
        return [Entry(r["name"], r["source"], r["group"], int(r["rotation_deg"])) for r in csv.DictReader(fh)]
