"""Out-of-distribution warning: is an image like the ones the model was trained on?

A network segments anything it is given; on a micrograph at another magnification, with inverted (bright-field-like)
contrast or a saturated detector it still returns a confident-looking mask. The model card keeps the training
images' `Domain`: their pixel-size range and three intensity statistics, and `check` names what puts an image
outside it, so predict and the served model can say so instead of silently segmenting it.

The intensity statistics do not change with the detector's gain and offset, which per-image normalisation removes
before the network sees the image anyway; they do change with what the network would notice:
- `median`: the median of the image normalised as inference normalises it (own 0.5/99.5 % percentiles). HAADF NCs
  are bright on a darker support, so it sits low; inverted contrast moves it high.
- `skew`: the quantile skewness (q90 + q10 - 2 q50) / (q90 - q10), positive for a bright minority on a dark
  field; inverted contrast flips its sign.
- `saturated`: the fraction of pixels at the image's maximum value: a clipped detector piles pixels there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from ncseg.normalization import normalize

PIXEL_SIZE_FACTOR = 1.5  # an image up to 1.5x finer or coarser than the training range is in it (train scale +-10 %)
RANGE_MARGIN = 0.5  # each intensity range is widened by this share of its width on both sides ...
MIN_MARGIN = {"median": 0.1, "skew": 0.25, "saturated": 0.01}  # ... and at least by this much
BOUNDS = {"median": (0.0, 1.0), "skew": (-1.0, 1.0), "saturated": (0.0, 1.0)}  # what each statistic can be
STATISTICS = tuple(MIN_MARGIN)
DESCRIPTION = {
    "median": "normalised median intensity (inverted or unusual contrast?)",
    "skew": "intensity skewness (inverted contrast: NCs darker than the support?)",
    "saturated": "fraction of pixels at the maximum value (saturated detector?)",
}


class Range(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    low: float
    high: float


class Domain(BaseModel):
    """The training images' pixel sizes and intensity statistics (min and max over images)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_images: int
    pixel_size_nm: Range | None  # None where no training image was calibrated
    median: Range
    skew: Range
    saturated: Range


class TrainingImage(Protocol):
    """What `training_domain` reads of a training sample (ncseg.data.dataset.Sample has it)."""

    raw: np.ndarray
    pixel_size_nm: float | None


def statistics(image: np.ndarray) -> dict[str, float]:
    """The intensity statistics of one raw image (see the module docstring)."""
    q10, q50, q90 = np.percentile(normalize(image), (10, 50, 90))
    spread = q90 - q10
    return {
        "median": float(q50),
        "skew": float((q90 + q10 - 2 * q50) / spread) if spread > 0 else 0.0,
        "saturated": float(np.count_nonzero(image == image.max()) / image.size),
    }


def _range(values: Sequence[float]) -> Range:
    return Range(low=min(values), high=max(values))


def training_domain(samples: Sequence[TrainingImage]) -> Domain:
    """The domain of the images a model was trained on (raw pixels and pixel size of each sample)."""
    if not samples:
        raise ValueError("a training domain needs at least one training image")
    stats = [statistics(s.raw) for s in samples]
    sizes = [s.pixel_size_nm for s in samples if s.pixel_size_nm]
    return Domain(
        n_images=len(samples),
        pixel_size_nm=_range(sizes) if sizes else None,
        **{name: _range([s[name] for s in stats]) for name in STATISTICS},
    )


def _allowed(name: str, r: Range) -> tuple[float, float]:
    margin = max(MIN_MARGIN[name], RANGE_MARGIN * (r.high - r.low))
    lowest, highest = BOUNDS[name]
    return max(lowest, r.low - margin), min(highest, r.high + margin)


def check(image: np.ndarray, pixel_size_nm: float | None, domain: Domain) -> list[str]:
    """Why `image` is outside the training domain, one reason per statistic; empty when it is inside. An image
    without a pixel size is judged on its intensities only."""
    reasons = []
    r = domain.pixel_size_nm
    if pixel_size_nm and r is not None and not r.low / PIXEL_SIZE_FACTOR <= pixel_size_nm <= r.high * PIXEL_SIZE_FACTOR:
        reasons.append(
            f"pixel size {pixel_size_nm:.3g} nm is outside the training range [{r.low:.3g}, {r.high:.3g}] nm "
            f"(x{PIXEL_SIZE_FACTOR} either way): particles appear at a scale the model never saw"
        )
    for name, value in statistics(image).items():
        low, high = _allowed(name, getattr(domain, name))
        if not low <= value <= high:
            reasons.append(
                f"{DESCRIPTION[name]} {value:.3g} is outside [{low:.3g}, {high:.3g}] (training range + margin)"
            )
    return reasons
