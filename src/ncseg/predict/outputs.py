"""What `ncseg predict` writes for a `Segmentation`, none of it running a network: per image the mask, the instance
labels, an ImageJ RoiSet, the probability and uncertainty maps, the particle table and the overlay; over all images
summary.csv (what `ncseg review` ranks) and the size histogram.

A model of more than two classes (ncseg.labels) also writes the class map (classes/<stem>.tif, uint8 ids with the
label set's colours as Fiji's lookup table), and the instance labels, particle table and RoiSet of each *particle*
class apart, named <stem>_<class> (a region class, like a support, is measured by its area fraction only); its
overlay shows each class in its colour, and its summary row has counts, sizes and area fractions per class.

Every file is written atomically (ncseg.io), so an interrupted run leaves whole files or none.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncseg import figures
from ncseg.config import ParticleParams
from ncseg.interop.imagej import write_roiset
from ncseg.io.images import write_class_map, write_mask, write_tiff
from ncseg.io.tables import write_csv
from ncseg.labels import LabelSet
from ncseg.normalization import normalize
from ncseg.particles import Particle, measure, split
from ncseg.predict.segment import Segmentation
from ncseg.uncertainty import (
    PARTICLE_COLUMNS,
    class_image_score,
    image_score,
    particle_scores,
)

SUMMARY = "summary.csv"


@dataclass(frozen=True)
class Instances:
    """The particles of a mask: the label image (ids = the particle table's `label` and the RoiSet's names) and
    each particle's measurements."""

    labels: np.ndarray
    particles: list[Particle]


Found = dict[int, Instances]  # per particle class id: a binary model's one class is 1


def particle_classes(labels: LabelSet) -> tuple[int, ...]:
    """The classes split into particles and measured: a binary model's one class always (the study's NCs)."""
    return (1,) if labels.is_binary else labels.particle_ids


def instances(seg: Segmentation, params: ParticleParams) -> Found:
    """Each particle class's particles, touching ones split apart (with the class's own limits where it has them),
    measured in nm on the image's own pixel values."""
    found = {}
    for k in particle_classes(seg.labels):
        labels = split(seg.classes == k, seg.pixel_size_nm, params.of(seg.labels.names[k]))
        found[k] = Instances(labels, measure(labels, seg.pixel_size_nm, seg.image.data))
    return found


def _stem(seg: Segmentation, k: int) -> str:
    """Outputs of particle class `k`: named by the image's stem, and by the class where there are several."""
    stem = seg.image.path.stem
    return stem if seg.labels.is_binary else f"{stem}_{seg.labels.names[k]}"


def write_image_outputs(
    out: Path, seg: Segmentation, found: Found, caption: str, *, save_probability: bool, rois: bool
) -> None:
    """Per image, named by its stem: the mask, the instance labels, the uncertainty, the particle table and the
    overlay (titled with `caption`: what made it); on request the probability map and an ImageJ RoiSet. A K-class
    model's class map too, and per particle class its labels, table and RoiSet."""
    stem, pixel_size = seg.image.path.stem, seg.pixel_size_nm
    write_mask(out / "masks" / f"{stem}.tif", seg.mask, pixel_size)
    if not seg.labels.is_binary:
        colours = [c.colour for c in seg.labels.classes]
        write_class_map(out / "classes" / f"{stem}.tif", seg.classes, colours, pixel_size)
    for k, each in found.items():
        name = _stem(seg, k)
        write_tiff(out / "labels" / f"{name}.tif", each.labels.astype(np.uint16), pixel_size)
        if rois:
            prefix = "" if seg.labels.is_binary else f"{seg.labels.names[k]}-"
            write_roiset(out / "rois" / f"{name}.zip", each.labels, prefix)
        write_csv(out / "particles" / f"{name}.csv", *particle_table(seg, each, k))
    if save_probability:
        write_tiff(out / "probability" / f"{stem}.tif", seg.probability, pixel_size)  # float32, written as it is
    write_tiff(out / "uncertainty" / f"{stem}.tif", seg.uncertainty, pixel_size)
    write_overlay(out, seg, found, caption)


def particle_table(seg: Segmentation, found: Instances, k: int = 1) -> tuple[list[dict], list[str]]:
    """Rows and columns of particle class `k`'s CSV: each particle's measurements, then its confidence (its class's
    mean probability) and boundary uncertainty (ncseg.uncertainty)."""
    scores = particle_scores(found.labels, seg.class_probability(k), seg.uncertainty)
    return [p.row() | scores[p.label] for p in found.particles], [*Particle.__dataclass_fields__, *PARTICLE_COLUMNS]


def write_overlay(out: Path, seg: Segmentation, found: Found, caption: str) -> None:
    """overlays/<stem>.png: outlines and ids over the image (a K-class model: each class in its colour, with a
    key), titled with what made them."""
    name, path = seg.image.path.name, out / "overlays" / f"{seg.image.path.stem}.png"
    if seg.labels.is_binary:
        each = found[1]
        border = sum(p.touches_border for p in each.particles)
        title = f"{name}: {len(each.particles)} particles, {border} cut by the border\n{caption}"
        figures.particle_overlay(path, normalize(seg.image.data), each.labels, each.particles, seg.pixel_size_nm, title)
        return
    counts = ", ".join(f"{len(each.particles)} {seg.labels.names[k]}" for k, each in found.items())
    classes = seg.labels.classes
    figures.class_overlay(
        path,
        normalize(seg.image.data),
        seg.classes,
        [c.name for c in classes],
        [c.colour for c in classes],
        seg.pixel_size_nm,
        f"{name}: {counts or 'no particle class'}\n{caption}",
    )


def summary_row(seg: Segmentation, found: Found, model: str) -> dict:
    """The image's line in summary.csv (binary_row; class_row for a K-class model)."""
    return binary_row(seg, found[1], model) if seg.labels.is_binary else class_row(seg, found, model)


def binary_row(seg: Segmentation, found: Instances, model: str) -> dict:
    """The image's line in summary.csv: counts, NC area, sizes away from the border, what made it, and its doubt:
    `uncertainty` (what `ncseg review` ranks by) and `ood` (why it is unlike the training data, '' if it is not)."""
    particles = found.particles
    edges = [p.edge_length_nm for p in particles if p.edge_length_nm is not None and not p.touches_border]
    return {
        "image": seg.image.path.name,
        "pixel_size_nm": seg.pixel_size_nm if seg.pixel_size_nm else "",
        "n_particles": len(particles),
        "n_inside": sum(not p.touches_border for p in particles),
        "n_border_excluded": sum(p.touches_border for p in particles),  # cut by the field: left out of sizes
        "nc_area_fraction": round(float(seg.mask.mean()), 4),
        "edge_nm_mean": round(float(np.mean(edges)), 3) if edges else "",
        "edge_nm_std": round(float(np.std(edges)), 3) if len(edges) > 1 else "",
        "model": model,
        "threshold": seg.threshold,
        "uncertainty": round(image_score(seg.uncertainty, seg.mask), 4),
        "ood": seg.ood,
    }


def class_row(seg: Segmentation, found: Found, model: str) -> dict:
    """A K-class model's line: per particle class its count (all, inside the field), mean and std equivalent
    diameter (nm, away from the border) and doubt; per foreground class its area fraction. `n_particles` and
    `uncertainty` (what `ncseg review` ranks by) are over the particle classes."""
    row: dict = {"image": seg.image.path.name, "pixel_size_nm": seg.pixel_size_nm if seg.pixel_size_nm else ""}
    row["n_particles"] = sum(len(each.particles) for each in found.values())
    for k, each in found.items():
        name, inside = seg.labels.names[k], [p for p in each.particles if not p.touches_border]
        sizes = [p.equivalent_diameter_nm for p in inside if p.equivalent_diameter_nm is not None]
        row[f"{name}_count"] = len(each.particles)
        row[f"{name}_inside"] = len(inside)
        row[f"{name}_diameter_nm_mean"] = round(float(np.mean(sizes)), 3) if sizes else ""
        row[f"{name}_diameter_nm_std"] = round(float(np.std(sizes)), 3) if len(sizes) > 1 else ""
        row[f"{name}_uncertainty"] = round(class_image_score(seg.uncertainty, seg.classes, seg.probability, [k]), 4)
    fractions = np.bincount(seg.classes.ravel(), minlength=len(seg.labels.classes)) / seg.classes.size
    for k in seg.labels.foreground:
        row[f"{seg.labels.names[k]}_area_fraction"] = round(float(fractions[k]), 4)
    ranked = list(found) or list(seg.labels.foreground)  # no particle class: the doubt over every class
    return row | {
        "model": model,
        "threshold": "argmax",
        "uncertainty": round(class_image_score(seg.uncertainty, seg.classes, seg.probability, ranked), 4),
        "ood": seg.ood,
    }


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
