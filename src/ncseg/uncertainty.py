"""Which predictions to doubt: per-pixel, per-particle and per-image uncertainty.

Per pixel, the uncertainty comes from the network passes that made the probability, never from passes of its own:

- Where the served model takes several views of the image (`tta: flip` or `d4`, times its ensemble members), it is
  twice the standard deviation of the calibrated NC probability across them (0: every view agrees, 1: half of them
  say NC with certainty, the other half background). Where the image itself settles the answer, a rotated or
  mirrored copy gets the same one; where the views disagree, the mask there is a guess.
- With one view (`tta: none`, the default) it is 4p(1-p) of the calibrated probability (0 where p is 0 or 1, 1 at
  p = 0.5; the binary entropy's quadratic stand-in): free, where the spread of the four mirror images cost four more
  passes through every network. Out of fold it ranks errors better than that spread on the real Pt/alumina data
  (pixel AUROC 0.956 vs 0.949 with one network, 0.969 vs 0.963 with three; image Spearman +0.32 vs -0.06 and +0.38
  vs +0.00; benchmarks/uncertainty_pt_alumina.md) and on the demo data for the two ResNet U-Nets (image Spearman
  +0.81 vs +0.75 and +0.73 vs +0.69, pixels alike), but not for the demo unet4 (image Spearman -0.19 vs +0.57;
  benchmarks/uncertainty.md), whose L2-regularised outputs are soft over every NC interior: serve such a model with
  `tta: flip` (four passes, the probability their mean) where the order of images matters.

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


def one_view_uncertainty(prob: np.ndarray) -> np.ndarray:
    """4p(1-p) of a calibrated probability map, in [0, 1]: the uncertainty where there is one view (see above), made
    as one float32 map."""
    doubt = np.subtract(1.0, prob, dtype=np.float32)
    doubt *= prob
    doubt *= 4.0
    return doubt


def class_uncertainty(prob: np.ndarray) -> np.ndarray:
    """1 - (p1 - p2)^2 of a (K, H, W) class probability, p1 and p2 its two largest at each pixel, in [0, 1]: where
    the argmax decision is close. With two classes it is 4p(1-p), the binary rule above; a K-class model's doubt is
    taken from its mean over the served views alone (the spread over views is measured for binary models only).
    Found plane by plane (K passes over float32 maps): numpy's sort or partition along the class axis is strided
    and took longer than the rest of a served answer."""
    first, second = top_two(prob)
    first -= second
    np.square(first, out=first)
    return np.subtract(1.0, first, dtype=np.float32)


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


def top_two(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and second-largest of a (K, H, W) class probability at each pixel, plane by plane."""
    first, second = prob[0].copy(), np.zeros(prob.shape[1:], np.float32)
    for plane in prob[1:]:
        np.maximum(second, np.minimum(first, plane), out=second)
        np.maximum(first, plane, out=first)
    return first, second


def class_image_score(uncertainty: np.ndarray, classes: np.ndarray, prob: np.ndarray, ks: list[int]) -> float:
    """`image_score` for the classes `ks` of a K-class map: the summed doubt where one of them is among the two
    likeliest classes (where a pixel could change to or from them), over their predicted area plus that sum."""
    second = top_two(prob)[1]
    near = np.zeros(classes.shape, bool)
    for k in ks:
        near |= prob[k] >= second
    doubt = float(uncertainty[near].sum(dtype=np.float64))
    return doubt / max(float(np.count_nonzero(np.isin(classes, ks))) + doubt, 1.0)
