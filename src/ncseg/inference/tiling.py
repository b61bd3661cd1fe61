"""Whole images of any size through any network: overlap-tiling and ensembling.

Tiling follows the overlap-tile strategy of the original U-Net: the image is mirror-padded, cut into tiles
whose outputs are cropped by `context` pixels on each side (plus, for `valid` networks, the margin the network
consumes itself) and averaged where they overlap. Tile origins sit on multiples of the network's pooling
divisor, so where `context` covers the receptive field the tiled result equals whole-image inference.

Memory is the answer plus a batch of tiles, whatever the image's size: each tile is cut from the image as it is
needed (the mirror padding by index, never a padded copy of the image), normalised as it is cut where the input is
a raw micrograph (`RawViews`), and its output is added straight into the answer. A detector frame or montage of
8k-16k px is segmented in the memory of its answer, not of a dozen float copies of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ncseg.config import View
from ncseg.inference.runtime import autocast, memory_format
from ncseg.models.geometry import Geometry
from ncseg.normalization import normalize, view_windows

Turn = Callable[[np.ndarray], np.ndarray]  # a view of the last two axes turned or mirrored (ncseg.inference.tta)


class DeadlineError(TimeoutError):
    """The caller stopped waiting (a served request past the server's timeout): the remaining tiles were not run."""


@dataclass(frozen=True)
class Planes:
    """A normalised image, (C, H, W): the tiler's input as training, validation and CV hold it."""

    array: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def cut(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.array[:, rows[:, None], cols]

    def turned(self, turn: Turn) -> Planes:
        return Planes(turn(self.array))


@dataclass(frozen=True)
class RawViews:
    """A raw micrograph as the network's input channels (ncseg.normalization.views), each tile normalised as it is
    cut: the same numbers as normalising the whole image first, without C float copies of it."""

    raw: np.ndarray  # (H, W), the file's own dtype
    windows: tuple[tuple[float, float], ...]  # one intensity window per channel

    @classmethod
    def of(cls, image: np.ndarray, normalization: Sequence[View], window: tuple[float, float] | None) -> RawViews:
        return cls(image, view_windows(image, normalization, window))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.windows), *self.raw.shape)

    def cut(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        block = self.raw[rows[:, None], cols]
        return np.stack([normalize(block, window) for window in self.windows])

    def turned(self, turn: Turn) -> RawViews:
        return RawViews(turn(self.raw), self.windows)


Source = Planes | RawViews


def source(image: np.ndarray | Source) -> Source:
    """What the tiler cuts tiles from: a normalised (H, W) or (C, H, W) array, or a source as it is."""
    if not isinstance(image, np.ndarray):
        return image
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"expected a (H, W) or (C, H, W) image, got shape {image.shape}")
    return Planes(image)


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


def context_pad(geometry: Geometry, context: int) -> tuple[int, int]:
    """The context actually cropped (rounded up to the pooling divisor) and the mirror padding on each side."""
    context = -(-context // geometry.divisor) * geometry.divisor if context else 0
    return context, geometry.margin + context


def tiled_pixels(height: int, width: int, geometry: Geometry, *, tile: int, context: int) -> int:
    """The input pixels the networks compute for one view of a `height` x `width` image: its tiles with their
    context and mirror padding. A square costs little more than its own pixels; a strip one pixel high costs a
    whole tile height for every pixel of its length (what a server must bound before it decodes a request)."""
    _, pad = context_pad(geometry, context)
    (th, _, ys), (tw, _, xs) = _tiling(height, tile, pad, geometry), _tiling(width, tile, pad, geometry)
    return len(ys) * th * len(xs) * tw


def _mirrored(start: int, size: int, length: int, reflect: bool) -> np.ndarray:
    """The image pixels of padded positions start … start + size - 1 (negative: before the image): np.pad's
    `reflect` (mirrored about the edge pixel, again and again for a pad longer than the image) or `edge`."""
    index = np.arange(start, start + size)
    if not reflect:
        return np.clip(index, 0, length - 1)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index < length, index, period - index)


def _kept_by(starts: list[int], usable: int, length: int) -> np.ndarray:
    """How many tiles keep each pixel along one axis: the weights of the overlap average, one axis at a time."""
    counts = np.zeros(length, np.float32)
    for start in starts:
        counts[start : start + usable] += 1
    return counts


@torch.no_grad()
def add_probability(
    nets: Sequence[nn.Module],
    geometry: Geometry,
    image: np.ndarray | Source,
    answer: np.ndarray,
    *,
    tile: int,
    context: int,
    batch_tiles: int,
    precision: str,
    deadline: float | None = None,
) -> None:
    """Add the nets' mean probability of `image` into `answer` (`blank`: (H, W), or (K, H, W) for nets with K
    softmax outputs), which may be a turned view of a larger array (test-time augmentation adds each view's answer
    in the image's own orientation). Each tile's kept output is divided by the number of tiles that keep its pixels
    before it is added: the overlap average, without a weight image. `deadline` (time.monotonic()) is checked
    before each batch of tiles: past it, DeadlineError."""
    src = source(image)
    device = next(nets[0].parameters()).device
    context, pad = context_pad(geometry, context)
    _, h, w = src.shape
    (th, uh, ys), (tw, uw, xs) = _tiling(h, tile, pad, geometry), _tiling(w, tile, pad, geometry)
    reflect = min(h, w) > 1
    kept_y, kept_x = _kept_by(ys, uh, h), _kept_by(xs, uw, w)
    origins = [(y, x) for y in ys for x in xs]
    for i in range(0, len(origins), batch_tiles):
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineError(f"stopped after {i} of {len(origins)} tiles")
        chunk = origins[i : i + batch_tiles]
        tiles = [src.cut(_mirrored(y - pad, th, h, reflect), _mirrored(x - pad, tw, w, reflect)) for y, x in chunk]
        batch = torch.from_numpy(np.stack(tiles)).to(device).contiguous(memory_format=memory_format(nets[0]))
        with autocast(precision, device):
            if nets[0].outputs == 1:
                prob = torch.stack([torch.sigmoid(net(batch).float()) for net in nets]).mean(0)[:, 0]
            else:
                prob = torch.stack([torch.softmax(net(batch).float(), dim=1) for net in nets]).mean(0)
        crop = prob[..., context : context + uh, context : context + uw].cpu().numpy()
        for (y, x), out in zip(chunk, crop, strict=True):
            rows, cols = slice(y, min(y + uh, h)), slice(x, min(x + uw, w))
            answer[..., rows, cols] += out[..., : rows.stop - y, : cols.stop - x] / np.outer(kept_y[rows], kept_x[cols])


def blank(nets: Sequence[nn.Module], shape: tuple[int, ...]) -> np.ndarray:
    """The zero answer to add probabilities into: (H, W) of the one class's probability for sigmoid nets, (K, H, W)
    of every class's for nets with K softmax outputs (ncseg.labels: a study of more than two classes)."""
    k = nets[0].outputs
    return np.zeros(shape if k == 1 else (k, *shape), np.float32)


def predict_proba(
    nets: Sequence[nn.Module],
    geometry: Geometry,
    image: np.ndarray | Source,
    *,
    tile: int,
    context: int,
    batch_tiles: int,
    precision: str,
    deadline: float | None = None,
) -> np.ndarray:
    """NC probability per pixel of a normalised image, (H, W) or channels-first (C, H, W), or of a raw one as
    `RawViews`: the mean of the nets' sigmoid outputs (of their softmax, (K, H, W), for K-class nets). Tiles
    follow the nets' memory format: channels-last nets (as served) get channels-last tiles, oneDNN's fast path
    for convolutions on the CPU. The settings have no defaults here: they come from `inference:` in params.yaml
    (`InferenceParams.tiling()`) or the served model's config, never from code."""
    src = source(image)
    answer = blank(nets, src.shape[1:])
    add_probability(
        nets,
        geometry,
        src,
        answer,
        tile=tile,
        context=context,
        batch_tiles=batch_tiles,
        precision=precision,
        deadline=deadline,
    )
    return answer
