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

from ncseg.config import View
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


def views(image: np.ndarray, normalization: Sequence[View], window: tuple[float, float] | None) -> np.ndarray:
    """The network's input channels, (C, H, W): one normalised copy of the image per entry of `normalization`.

    Each view knows something the other does not: the dataset window keeps the absolute Z-contrast level,
    the image's own percentiles say where that level sits within this field of view — the adaptivity a
    per-image threshold such as Otsu's has. A network given both can learn either, or their combination.
    """
    if "dataset" in normalization and window is None:
        raise ValueError("the 'dataset' view needs the dataset's intensity window")
    return np.stack([normalize(image, window if view == "dataset" else None) for view in normalization])


def intensity_window(images: Sequence[np.ndarray], max_values: int = 4_000_000) -> tuple[float, float]:
    """The percentile window of all images' pixels together (label-free), subsampled evenly per image."""
    per_image = max(1, max_values // len(images))
    values = np.concatenate([im.ravel()[:: max(1, im.size // per_image)].astype(np.float32) for im in images])
    lo, hi = np.percentile(values, PERCENTILES)
    return float(lo), float(hi)


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast (on the CPU through oneDNN: AVX-512 BF16 / AMX where present), or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _starts(length: int, stride: int) -> list[int]:
    return list(range(0, max(length - 1, 0) // stride * stride + 1, stride)) if length > 0 else [0]


def _memory_format(net: nn.Module) -> torch.memory_format:
    kernel = next(p for p in net.parameters() if p.ndim == 4)
    channels_last = kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _tiling(length: int, tile: int, pad: int, geometry: Geometry) -> tuple[int, int, list[int]]:
    """Along one axis: the tile's input size, the part of its output that is kept, and the output origins.

    `tile` is an upper bound: an image smaller than a tile gets one tile just large enough for it (plus its
    context), so small images do not pay for a large tile and a 2048-px image is four 1088-px tiles, not
    twenty-five 512-px ones.
    """
    t_in = geometry.fit(max(min(tile, length + 2 * pad), 2 * pad + geometry.divisor))
    usable = t_in - 2 * pad
    stride = max(geometry.divisor, usable // geometry.divisor * geometry.divisor)
    return t_in, usable, _starts(length, stride)


@torch.no_grad()
def predict_proba(
    nets: Sequence[nn.Module],
    geometry: Geometry,
    image: np.ndarray,
    tile: int = 512,
    context: int = 32,
    batch_tiles: int = 4,
    precision: str = "fp32",
) -> np.ndarray:
    """NC probability per pixel of a normalised image, (H, W) or channels-first (C, H, W): the mean of the nets'
    sigmoid outputs. Tiles follow the nets' memory format: channels-last nets (as served) get channels-last
    tiles, oneDNN's fast path for convolutions on the CPU."""
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"expected a (H, W) or (C, H, W) image, got shape {image.shape}")
    device = next(nets[0].parameters()).device
    context = -(-context // geometry.divisor) * geometry.divisor if context else 0
    pad = geometry.margin + context
    h, w = image.shape[1:]
    (th, uh, ys), (tw, uw, xs) = _tiling(h, tile, pad, geometry), _tiling(w, tile, pad, geometry)
    padded = np.pad(
        image,
        ((0, 0), (pad, ys[-1] + th - pad - h), (pad, xs[-1] + tw - pad - w)),
        mode="reflect" if min(h, w) > 1 else "edge",
    )
    total = np.zeros((ys[-1] + uh, xs[-1] + uw), np.float32)
    weight = np.zeros_like(total)
    origins = [(y, x) for y in ys for x in xs]
    for i in range(0, len(origins), batch_tiles):
        chunk = origins[i : i + batch_tiles]
        batch = torch.from_numpy(np.stack([padded[:, y : y + th, x : x + tw] for y, x in chunk])).to(device)
        batch = batch.contiguous(memory_format=_memory_format(nets[0]))
        with autocast(precision, device):
            prob = torch.stack([torch.sigmoid(net(batch).float()) for net in nets]).mean(0)[:, 0]
        crop = prob[:, context : context + uh, context : context + uw].cpu().numpy()
        for (y, x), out in zip(chunk, crop, strict=True):
            total[y : y + uh, x : x + uw] += out
            weight[y : y + uh, x : x + uw] += 1
    return (total / weight)[:h, :w]
