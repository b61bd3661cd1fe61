"""`ncseg review`: which predictions to correct first.

Correcting takes a microscopist's minutes per image, so the loop starts with the images the model is least sure
of: `summary.csv`'s per-image `uncertainty` (written by `ncseg predict`), highest first. Each row names the file to
open for the correction: the ImageJ RoiSet where predict wrote one (`--rois`), else the overlay.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ncseg.predict.outputs import SUMMARY


class ReviewError(ValueError):
    """A predictions folder that cannot be ranked; the message names the file and what is missing."""


@dataclass(frozen=True)
class Candidate:
    image: str
    uncertainty: float | None  # None: not scored (an empty or non-numeric cell), listed last
    n_particles: str
    ood: str | None  # the out-of-distribution flag, where predict wrote one
    open: Path  # what to correct: rois/<stem>.zip, else a K-class model's classes/<stem>.tif, else the overlay


def rank(predictions: Path) -> list[Candidate]:
    """The images of an `ncseg predict` output folder, most uncertain first, unscored ones last."""
    summary = predictions / SUMMARY
    try:
        with summary.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, columns = [(reader.line_num, row) for row in reader], reader.fieldnames or []
    except FileNotFoundError as err:
        raise ReviewError(f"{summary}: not found; is {predictions} an `ncseg predict` output folder?") from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReviewError(f"{summary}: cannot read it ({getattr(err, 'strerror', None) or err})") from err
    if "image" not in columns:
        raise ReviewError(f"{summary}: no 'image' column; is it the summary.csv that `ncseg predict` wrote?")
    if "uncertainty" not in columns:
        raise ReviewError(
            f"{summary}: no 'uncertainty' column: these predictions were made without uncertainty, so there is "
            "nothing to rank them by; predict them again with this ncseg"
        )
    unnamed = [str(line) for line, row in rows if not row["image"]]  # a short row leaves it None
    if unnamed:
        raise ReviewError(f"{summary}: no image name on line {', '.join(unnamed)}")
    candidates = [_candidate(predictions, row, "ood" in columns) for _, row in rows]
    return sorted(candidates, key=lambda c: (c.uncertainty is None, -(c.uncertainty or 0.0)))


def _candidate(predictions: Path, row: dict[str, str], has_ood: bool) -> Candidate:
    stem = Path(row["image"]).stem
    found = [predictions / "rois" / f"{stem}.zip", predictions / "classes" / f"{stem}.tif"]
    return Candidate(
        image=row["image"],
        uncertainty=_number(row["uncertainty"]),
        n_particles=row.get("n_particles", ""),
        ood=row.get("ood", "") if has_ood else None,
        open=next((path for path in found if path.is_file()), predictions / "overlays" / f"{stem}.png"),
    )


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None
