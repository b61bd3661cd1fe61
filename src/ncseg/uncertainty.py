"""Which predictions to doubt: per-pixel, per-particle and per-image uncertainty.

Per pixel, the uncertainty is twice the standard deviation of the calibrated NC probability across the views the
served model takes of the image: its test-time transforms times its ensemble members (0: every view agrees, 1: half
of them say NC with certainty, the other half background). Where the image itself settles the answer, a rotated or
mirrored copy gets the same one; where the views disagree, the mask there is a guess.

One network without test-time augmentation has no spread. Then the four mirror images (`tta: flip`) are taken for the
uncertainty, while the served probability stays the plain one the threshold was tuned on: three extra passes through
the network, paid only where an uncertainty is asked for. The binary entropy 4p(1-p) of the single probability was
measured as the free alternative (benchmarks/uncertainty.md, out of fold on the demo data): it separates wrong pixels
about as well (AUROC 0.973-0.992 vs 0.978-0.992 for the spread) and ranks images a little better for the two ResNet
U-Nets (Spearman 0.73-0.81 vs 0.69-0.75), but not at all for unet4 (-0.19 vs +0.57), whose L2-regularised outputs
are soft over every NC interior, so a soft probability there says nothing about an error. The spread holds for all.

Per particle: `confidence` is the mean calibrated probability inside it, `boundary_uncertainty` the mean uncertainty
on the band one pixel either side of its outline, where a size error would come from. Per image: the summed
uncertainty over the predicted NC area plus that sum, an analogue of 1 - Jaccard in [0, 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

PARTICLE_COLUMNS = ("confidence", "boundary_uncertainty")
CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity, as find_boundaries uses
ROWS = 256  # image rows squared in float64 at once


def pixel_uncertainty(views: Iterable[np.ndarray]) -> np.ndarray:
    """2 x the standard deviation over probability maps of one image, in [0, 1]. The maps are consumed one at a time
    into running float64 sums updated in place, so a 16k² image in 8 views by 5 members holds two sums and one map,
    never 40 maps or a float64 copy of each."""
    n, total, squares = 0, None, None
    for view in views:
        if total is None:
            total, squares = np.zeros(view.shape), np.zeros(view.shape)
        n += 1
        np.add(total, view, out=total)
        for start in range(0, len(view), ROWS):  # a band of float64 squares at a time
            squares[start : start + ROWS] += np.square(view[start : start + ROWS], dtype=np.float64)
    if n < 2:
        raise ValueError(f"uncertainty is the spread of at least two views of an image, got {n}")
    total /= n  # the mean, then its square, then the variance, all in place
    total *= total
    squares /= n
    squares -= total
    np.sqrt(np.maximum(squares, 0.0, out=squares), out=squares)
    squares *= 2.0
    return squares.astype(np.float32)


def boundary_band(labels: np.ndarray) -> np.ndarray:
    """The owner of each pixel within one pixel of a particle's outline, inside or outside it; 0 elsewhere. An outside
    pixel between two particles goes to the higher label (one band pixel, one owner)."""
    inside = find_boundaries(labels, mode="inner") & (labels > 0)
    grown = ndimage.grey_dilation(labels, footprint=CROSS)
    outside = (labels == 0) & (grown > 0)
    return np.where(inside, labels, np.where(outside, grown, 0))


def _label_means(values: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    """Mean of `values` per owner 1..n (NaN for an owner with no pixel)."""
    sums = np.bincount(owners.ravel(), weights=values.ravel().astype(np.float64), minlength=n + 1)[1:]
    counts = np.bincount(owners.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def particle_scores(labels: np.ndarray, prob: np.ndarray, uncertainty: np.ndarray) -> dict[int, dict[str, float]]:
    """Per label: {'confidence', 'boundary_uncertainty'} (PARTICLE_COLUMNS), rounded for a table."""
    n = int(labels.max())
    confidence = _label_means(prob, labels, n)
    boundary = _label_means(uncertainty, boundary_band(labels), n)
    return {
        k + 1: {"confidence": round(float(c), 4), "boundary_uncertainty": round(float(b), 4)}
        for k, (c, b) in enumerate(zip(confidence, boundary, strict=True))
        if np.isfinite(c)  # a label number with no pixel is no particle
    }


def image_score(uncertainty: np.ndarray, mask: np.ndarray) -> float:
    """Summed pixel uncertainty over (predicted NC area + that sum): the share of the NC area in doubt. Normalised by
    the NC area because the error it ranks, 1 - Jaccard, is; the sum in the denominator keeps a field with nothing
    found but much doubt near 1 instead of dividing by zero."""
    doubt = float(uncertainty.sum(dtype=np.float64))
    return doubt / max(float(np.count_nonzero(mask)) + doubt, 1.0)
