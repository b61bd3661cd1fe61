"""Intensity normalisation: how a microscope image of any bit depth becomes the network's input channels.

Training (ncseg.data.dataset), every inference path and the served model use these functions, so the numbers a
network sees are the same wherever it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ncseg.config import View

PERCENTILES = (0.5, 99.5)


def normalize(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Scale to [0, 1] by an intensity window: the image's own percentiles, or a dataset-wide window.

    Per image is robust to any detector's bit depth, gain and offset, but makes a pixel's value depend on how
    much of the field is material. A dataset-wide window (`intensity_window`) keeps HAADF's quantitative
    Z-contrast comparable across images recorded with the same settings.
    """
    image = image.astype(np.float32, copy=False)
    lo, hi = window or image_window(image)
    if hi <= lo:
        return np.zeros_like(image)
    scaled = image - lo  # then in place: one float copy of the image, not three
    scaled /= hi - lo
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def image_window(image: np.ndarray) -> tuple[float, float]:
    """The image's own percentile window, as `normalize` takes it: on float32 values (a tiled 16k² montage needs
    its window before any tile is normalised). Floats keep what is normalised with it float32."""
    lo, hi = np.percentile(image.astype(np.float32), PERCENTILES, overwrite_input=True)  # sorts the copy in place
    return float(lo), float(hi)


def views(image: np.ndarray, normalization: Sequence[View], window: tuple[float, float] | None) -> np.ndarray:
    """The network's input channels, (C, H, W): one normalised copy of the image per entry of `normalization`.

    Each view knows something the other does not: the dataset window keeps the absolute Z-contrast level,
    the image's own percentiles say where that level sits within this field of view — the adaptivity a
    per-image threshold such as Otsu's has. A network given both can learn either, or their combination.
    """
    return np.stack([normalize(image, w) for w in view_windows(image, normalization, window)])


def view_windows(
    image: np.ndarray, normalization: Sequence[View], window: tuple[float, float] | None
) -> tuple[tuple[float, float], ...]:
    """The intensity window of each of `views`' channels: the dataset's, or the image's own percentiles."""
    if "dataset" in normalization and window is None:
        raise ValueError("the 'dataset' view needs the dataset's intensity window")
    return tuple(window if view == "dataset" else image_window(image) for view in normalization)


def intensity_window(
    images: Sequence[np.ndarray], percentiles: tuple[float, float] = PERCENTILES, max_values: int = 4_000_000
) -> tuple[float, float]:
    """The percentile window of all images' pixels together (label-free), subsampled evenly per image. Its top
    clips: where the class that matters is the brightest and rarest (Pt, 0.3 % of the pixels: 88 % of them above
    the 99.5th percentile), a higher top percentile keeps its contrast."""
    per_image = max(1, max_values // len(images))
    values = np.concatenate([im.ravel()[:: max(1, im.size // per_image)].astype(np.float32) for im in images])
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(hi)
