"""Whole images of any size through any network: normalisation, overlap-tiling, ensembling.

One code path serves validation during training, out-of-fold predictions, the MLflow pyfunc model and
`ncseg predict`, so what is measured in cross-validation is what users run.

Tiling follows the overlap-tile strategy of the original U-Net: the image is mirror-padded, cut into tiles
whose outputs are cropped by `context` pixels on each side (plus, for `valid` networks, the margin the network
consumes itself) and averaged where they overlap. Tile origins sit on multiples of the network's pooling
divisor, so where `context` covers the receptive field the tiled result equals whole-image inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ncseg.models.unet import Geometry

PERCENTILES = (0.5, 99.5)


def normalize(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Scale to [0, 1] by an intensity window: the image's own percentiles, or a dataset-wide window.

    Per image is robust to any detector's bit depth, gain and offset, but makes a pixel's value depend on how
    much of the field is material. A dataset-wide window (`intensity_window`) keeps HAADF's quantitative
    Z-contrast comparable across images recorded with the same settings.
    """
    image = image.astype(np.float32, copy=False)
    lo, hi = window or (float(v) for v in np.percentile(image, PERCENTILES))  # floats keep the result float32
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def intensity_window(images: Sequence[np.ndarray], max_values: int = 4_000_000) -> tuple[float, float]:
    """The percentile window of all images' pixels together (label-free), subsampled evenly per image."""
    per_image = max(1, max_values // len(images))
    values = np.concatenate([im.ravel()[:: max(1, im.size // per_image)].astype(np.float32) for im in images])
    lo, hi = np.percentile(values, PERCENTILES)
    return float(lo), float(hi)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _starts(length: int, stride: int) -> list[int]:
    return list(range(0, max(length - 1, 0) // stride * stride + 1, stride)) if length > 0 else [0]


@torch.no_grad()
def predict_proba(
    nets: Sequence[nn.Module],
    geometry: Geometry,
    image: np.ndarray,
    tile: int = 512,
    context: int = 32,
    batch_tiles: int = 4,
) -> np.ndarray:
    """NC probability per pixel of a normalised 2-D image: the mean of the nets' sigmoid outputs."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    device = next(nets[0].parameters()).device
    context = -(-context // geometry.divisor) * geometry.divisor if context else 0
    pad_before = geometry.margin + context
    t_in = geometry.fit(max(tile, 2 * pad_before + geometry.divisor))
    usable = t_in - 2 * pad_before
    stride = max(geometry.divisor, usable // geometry.divisor * geometry.divisor)
    h, w = image.shape
    ys, xs = _starts(h, stride), _starts(w, stride)
    padded = np.pad(
        image,
        ((pad_before, ys[-1] + t_in - pad_before - h), (pad_before, xs[-1] + t_in - pad_before - w)),
        mode="reflect" if min(h, w) > 1 else "edge",
    )
    total = np.zeros((ys[-1] + usable, xs[-1] + usable), np.float32)
    weight = np.zeros_like(total)
    origins = [(y, x) for y in ys for x in xs]
    for i in range(0, len(origins), batch_tiles):
        chunk = origins[i : i + batch_tiles]
        batch = torch.from_numpy(np.stack([padded[y : y + t_in, x : x + t_in] for y, x in chunk])[:, None]).to(device)
        prob = torch.stack([torch.sigmoid(net(batch).float()) for net in nets]).mean(0)[:, 0]
        crop = prob[:, context : context + usable, context : context + usable].cpu().numpy()
        for (y, x), out in zip(chunk, crop, strict=True):
            total[y : y + usable, x : x + usable] += out
            weight[y : y + usable, x : x + usable] += 1
    return (total / weight)[:h, :w]
