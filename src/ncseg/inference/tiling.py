"""Whole images of any size through any network: overlap-tiling and ensembling.

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

from ncseg.inference.runtime import autocast, memory_format
from ncseg.models.geometry import Geometry


def _starts(length: int, stride: int) -> list[int]:
    return list(range(0, max(length - 1, 0) // stride * stride + 1, stride)) if length > 0 else [0]


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
    *,
    tile: int,
    context: int,
    batch_tiles: int,
    precision: str,
) -> np.ndarray:
    """NC probability per pixel of a normalised image, (H, W) or channels-first (C, H, W): the mean of the nets'
    sigmoid outputs. Tiles follow the nets' memory format: channels-last nets (as served) get channels-last
    tiles, oneDNN's fast path for convolutions on the CPU. The settings have no defaults here: they come from
    `inference:` in params.yaml (`InferenceParams.tiling()`) or the served model's config, never from code."""
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
        batch = batch.contiguous(memory_format=memory_format(nets[0]))
        with autocast(precision, device):
            prob = torch.stack([torch.sigmoid(net(batch).float()) for net in nets]).mean(0)[:, 0]
        crop = prob[:, context : context + uh, context : context + uw].cpu().numpy()
        for (y, x), out in zip(chunk, crop, strict=True):
            total[y : y + uh, x : x + uw] += out
            weight[y : y + uh, x : x + uw] += 1
    return (total / weight)[:h, :w]
