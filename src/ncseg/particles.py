"""From an NC mask to particles: split touching NCs, measure each in nm.

Touching or bridged NCs are separated with a distance-transform watershed (one seed per NC core, seeds
closer than `min_distance_nm` merged). A cube lying on a face projects to a square, so the edge length is
estimated as sqrt(area).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.measure import label, regionprops
from skimage.segmentation import watershed

from ncseg.config import ParticleParams


@dataclass(frozen=True)
class Particle:
    label: int
    area_px: int
    area_nm2: float | None
    equivalent_diameter_nm: float | None
    edge_length_nm: float | None
    centroid_x_nm: float | None
    centroid_y_nm: float | None
    centroid_x_px: float
    centroid_y_px: float
    bbox_min_row: int
    bbox_min_col: int
    bbox_max_row: int
    bbox_max_col: int
    touches_border: bool

    def row(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def split(mask: np.ndarray, pixel_size_nm: float | None, p: ParticleParams) -> np.ndarray:
    """Label image with touching NCs separated; specks under `min_area_nm2` dropped."""
    px = pixel_size_nm or 1.0
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # outside the field is background
    regions = label(mask, connectivity=1)
    peaks = peak_local_max(
        distance, min_distance=max(1, round(p.min_distance_nm / px)), labels=regions, exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    min_px = p.min_area_nm2 / px**2
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_px)[labels] & (labels > 0)] = 0
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    kept = np.unique(labels[labels > 0])
    lookup = np.zeros(labels.max() + 1, np.int32)
    lookup[kept] = np.arange(1, len(kept) + 1)
    return lookup[labels]


def measure(labels: np.ndarray, pixel_size_nm: float | None) -> list[Particle]:
    px = pixel_size_nm
    h, w = labels.shape
    particles = []
    for r in regionprops(labels):
        y, x = r.centroid
        y0, x0, y1, x1 = r.bbox
        area_nm2 = r.area * px**2 if px else None
        particles.append(
            Particle(
                label=int(r.label),
                area_px=int(r.area),
                area_nm2=area_nm2,
                equivalent_diameter_nm=float(np.sqrt(4 * area_nm2 / np.pi)) if px else None,
                edge_length_nm=float(np.sqrt(area_nm2)) if px else None,
                centroid_x_nm=x * px if px else None,
                centroid_y_nm=y * px if px else None,
                centroid_x_px=float(x),
                centroid_y_px=float(y),
                bbox_min_row=int(y0),
                bbox_min_col=int(x0),
                bbox_max_row=int(y1),
                bbox_max_col=int(x1),
                touches_border=bool(y0 == 0 or x0 == 0 or y1 == h or x1 == w),
            )
        )
    return particles
