"""What `ncseg predict` writes for a `Segmentation`, none of it running a network: per image the mask, the instance
labels, an ImageJ RoiSet, the probability and uncertainty maps, the particle table and the overlay; over all images
summary.csv (what `ncseg review` ranks) and the size histogram.

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
from ncseg.io.images import write_mask, write_tiff
from ncseg.io.tables import write_csv
from ncseg.normalization import normalize
from ncseg.particles import Particle, measure, split
from ncseg.predict.segment import Segmentation
from ncseg.uncertainty import PARTICLE_COLUMNS, image_score, particle_scores

SUMMARY = "summary.csv"


@dataclass(frozen=True)
class Instances:
    """The particles of a mask: the label image (ids = the particle table's `label` and the RoiSet's names) and
    each particle's measurements."""

    labels: np.ndarray
    particles: list[Particle]


def instances(seg: Segmentation, params: ParticleParams) -> Instances:
    """The mask's particles, touching ones split apart, measured in nm on the image's own pixel values."""
    labels = split(seg.mask, seg.pixel_size_nm, params)
    return Instances(labels, measure(labels, seg.pixel_size_nm, seg.image.data))


def write_image_outputs(
    out: Path, seg: Segmentation, found: Instances, caption: str, *, save_probability: bool, rois: bool
) -> None:
    """Per image, named by its stem: the mask, the instance labels, the uncertainty, the particle table and the
    overlay (titled with `caption`: what made it); on request the probability map and an ImageJ RoiSet."""
    stem, pixel_size = seg.image.path.stem, seg.pixel_size_nm
    write_mask(out / "masks" / f"{stem}.tif", seg.mask, pixel_size)
    write_tiff(out / "labels" / f"{stem}.tif", found.labels.astype(np.uint16), pixel_size)
    if rois:
        write_roiset(out / "rois" / f"{stem}.zip", found.labels)
    if save_probability:
        write_tiff(out / "probability" / f"{stem}.tif", seg.probability, pixel_size)  # float32, written as it is
    write_tiff(out / "uncertainty" / f"{stem}.tif", seg.uncertainty, pixel_size)
    write_csv(out / "particles" / f"{stem}.csv", *particle_table(seg, found))
    write_overlay(out, seg, found, caption)


def particle_table(seg: Segmentation, found: Instances) -> tuple[list[dict], list[str]]:
    """Rows and columns of a particle CSV: each particle's measurements, then its confidence and boundary
    uncertainty (ncseg.uncertainty)."""
    scores = particle_scores(found.labels, seg.probability, seg.uncertainty)
    return [p.row() | scores[p.label] for p in found.particles], [*Particle.__dataclass_fields__, *PARTICLE_COLUMNS]


def write_overlay(out: Path, seg: Segmentation, found: Instances, caption: str) -> None:
    """overlays/<stem>.png: outlines and ids over the image, titled with what made them."""
    border = sum(p.touches_border for p in found.particles)
    name = seg.image.path.name
    title = f"{name}: {len(found.particles)} particles, {border} cut by the border\n{caption}"
    path = out / "overlays" / f"{seg.image.path.stem}.png"
    figures.particle_overlay(path, normalize(seg.image.data), found.labels, found.particles, seg.pixel_size_nm, title)


def summary_row(seg: Segmentation, found: Instances, model: str) -> dict:
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
