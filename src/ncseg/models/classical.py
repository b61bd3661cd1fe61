"""The number a U-Net must beat: what an ImageJ user does (Gaussian blur, Otsu, clean small specks and holes).

Binary studies: `segment`, one Otsu threshold per image. Multi-class studies: `fit_levels` learns one global
intensity interval per class on the training images (HAADF intensity grows with Z², so pores, support and Pt
differ by brightness) and `segment_levels` applies them, so the baseline sees the same training data as the net.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import filters, morphology

from ncseg.config import ClassicalParams

_BINS = 4096  # candidate cuts: 1/4096 of the training intensity range (1/16 grey level on 8-bit images)


@dataclass(frozen=True)
class Levels:
    """Class intensity intervals fitted on training images, in the smoothed image's raw units.

    `order` holds the class ids darkest first; a pixel with cuts[k-1] <= intensity < cuts[k] is class order[k].
    A cut of +inf closes every class after it: those are never predicted (no training pixel says how bright
    they are).
    """

    order: tuple[int, ...]
    cuts: tuple[float, ...]


def segment(image: np.ndarray, pixel_size_nm: float | None, p: ClassicalParams) -> np.ndarray:
    """Boolean NC mask. Uncalibrated images take the nm settings as px."""
    smooth = _smooth(image, pixel_size_nm, p)
    mask = smooth > filters.threshold_otsu(smooth)
    min_px = _min_px(pixel_size_nm, p)
    mask = morphology.remove_small_objects(mask, max_size=min_px - 1)
    return morphology.remove_small_holes(mask, max_size=min_px - 1)


def fit_levels(
    images: Sequence[np.ndarray],
    class_maps: Sequence[np.ndarray],
    pixel_sizes_nm: Sequence[float | None],
    p: ClassicalParams,
    n_classes: int,
) -> Levels:
    """Global class intensity intervals that best reproduce the training class maps.

    One global set of cuts, not one per image: Otsu per image cannot know how many classes an image holds, and
    the training labels can say where each boundary pays most. The classes present are ordered by the median
    smoothed intensity of their pixels (ties by id); classes absent from the training images go last, behind
    +inf cuts, so they are never predicted. Each cut maximises the mean pooled Jaccard of its two sides (all
    classes darker vs all brighter, over every training pixel; for the darkest and brightest class that is
    their own Jaccard), swept exactly over a `_BINS`-bin histogram, and may not fall below the cut before it
    (a class whose interval closes is never predicted). Equally good cuts (a gap between well-separated classes)
    give their middle, the margin an unseen image can drift in; constant images give every pixel the side with
    more of them.
    """
    if n_classes < 2:
        raise ValueError(f"fit_levels: need at least 2 classes, got {n_classes}")
    pairs = list(zip(images, class_maps, pixel_sizes_nm, strict=True))
    smooths = [np.asarray(_smooth(image, px, p), dtype=np.float64) for image, _, px in pairs]
    if not any(s.size for s in smooths):
        raise ValueError("fit_levels: no training pixels")
    lo = min(float(s.min()) for s in smooths if s.size)
    hi = max(float(s.max()) for s in smooths if s.size)
    width = hi - lo if hi > lo else 1.0  # constant images: one bin holds every pixel, any width will do
    hist = np.zeros(n_classes * _BINS, dtype=np.int64)
    for smooth, (_, class_map, _) in zip(smooths, pairs, strict=True):
        if class_map.shape != smooth.shape:
            raise ValueError(f"fit_levels: class map shape {class_map.shape} differs from its image's {smooth.shape}")
        if class_map.size and class_map.max() >= n_classes:
            raise ValueError(f"fit_levels: class map holds class {class_map.max()}, but n_classes is {n_classes}")
        bins = np.minimum(((smooth - lo) * (_BINS / width)).astype(np.int64), _BINS - 1)
        hist += np.bincount((class_map.astype(np.int64) * _BINS + bins).ravel(), minlength=n_classes * _BINS)
    below = np.zeros((n_classes, _BINS + 1), dtype=np.int64)  # below[c, j]: class c pixels in bins < j
    np.cumsum(hist.reshape(n_classes, _BINS), axis=1, out=below[:, 1:])
    totals = below[:, -1]
    median_bin = [int(np.searchsorted(below[c], totals[c] / 2)) for c in range(n_classes)]
    present = sorted((c for c in range(n_classes) if totals[c]), key=lambda c: (median_bin[c], c))
    absent = [c for c in range(n_classes) if not totals[c]]
    candidates = np.append(lo + np.arange(_BINS) * (width / _BINS), np.inf)  # candidates[j]: bins < j darker
    cuts: list[float] = []
    floor = -np.inf
    for k in range(1, len(present)):
        dark, bright = below[present[:k]].sum(axis=0), below[present[k:]].sum(axis=0)
        n_dark, n_bright = dark[-1], bright[-1]
        score = dark / (n_dark + bright) + (n_bright - bright) / (n_bright + n_dark - dark)
        score[candidates < floor] = -1.0
        floor = _middle_of_best(candidates, score)
        cuts.append(floor)
    return Levels(order=(*present, *absent), cuts=(*cuts, *[np.inf] * len(absent)))


def segment_levels(image: np.ndarray, pixel_size_nm: float | None, p: ClassicalParams, levels: Levels) -> np.ndarray:
    """uint8 class map: each pixel the class of its smoothed intensity's interval, as `fit_levels` learned them.

    Objects of a foreground class smaller than `p.min_area_nm2` are noise or a boundary's blur, not particles;
    their pixels take the class of the nearest pixel kept (a speck of Pt on support becomes support, not a hole
    of background; an image of nothing but specks becomes background). Background specks stay: class 0 holds
    pores of any size.
    """
    smooth = _smooth(image, pixel_size_nm, p)
    labels = np.asarray(levels.order, dtype=np.uint8)[np.searchsorted(levels.cuts, smooth, side="right")]
    min_px = _min_px(pixel_size_nm, p)
    speck = np.zeros(labels.shape, dtype=bool)
    for c in range(1, len(levels.order)):
        mask = labels == c
        speck |= mask & ~morphology.remove_small_objects(mask, max_size=min_px - 1)
    if speck.all():
        return np.zeros_like(labels)
    if speck.any():
        nearest = ndimage.distance_transform_edt(speck, return_distances=False, return_indices=True)
        labels = labels[tuple(nearest)]
    return labels


def _smooth(image: np.ndarray, pixel_size_nm: float | None, p: ClassicalParams) -> np.ndarray:
    """The Gaussian both baselines see; uncalibrated images take `sigma_nm` as px."""
    px = pixel_size_nm or 1.0
    return filters.gaussian(image.astype(np.float32), sigma=p.sigma_nm / px) if p.sigma_nm else image


def _min_px(pixel_size_nm: float | None, p: ClassicalParams) -> int:
    """`min_area_nm2` in px (at least 1); uncalibrated images take it as px²."""
    px = pixel_size_nm or 1.0
    return max(1, int(p.min_area_nm2 / px**2))


def _middle_of_best(candidates: np.ndarray, score: np.ndarray) -> float:
    """The middle of the first run of best-scoring candidates (+inf if the run reaches the last, +inf)."""
    best = np.flatnonzero(score == score.max())
    gaps = np.flatnonzero(np.diff(best) > 1)
    last = best[gaps[0]] if gaps.size else best[-1]
    return float((candidates[best[0]] + candidates[last]) / 2)
