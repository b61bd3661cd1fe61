"""The number a U-Net must beat: what an ImageJ user does (Gaussian blur, Otsu, clean small specks and holes)."""

from __future__ import annotations

import numpy as np
from skimage import filters, morphology

from ncseg.config import ClassicalParams


def segment(image: np.ndarray, pixel_size_nm: float | None, p: ClassicalParams) -> np.ndarray:
    """Boolean NC mask. Uncalibrated images take the nm settings as px."""
    px = pixel_size_nm or 1.0
    smooth = filters.gaussian(image.astype(np.float32), sigma=p.sigma_nm / px) if p.sigma_nm else image
    mask = smooth > filters.threshold_otsu(smooth)
    min_px = max(1, int(p.min_area_nm2 / px**2))
    mask = morphology.remove_small_objects(mask, max_size=min_px - 1)
    return morphology.remove_small_holes(mask, max_size=min_px - 1)
