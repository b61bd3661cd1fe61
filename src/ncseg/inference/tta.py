"""Test-time augmentation: the network sees the image in several orientations and its answers, turned back, are
averaged. A HAADF image has no preferred orientation, so every dihedral transform is an equally valid view.

`flip` uses the four mirror images (nnU-Net's test-time mirroring in 2-D), `d4` all eight dihedral transforms (the
four quarter turns, each mirrored). Every transform is a lossless permutation of pixels and is exactly inverted,
so a network that is itself symmetric gives the same answer with and without TTA.

The views are turned as numpy views, not copies, and each view's tiles add their answer into the image's own
orientation (`ncseg.inference.tiling`): TTA costs time, not memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from ncseg.config import TTA
from ncseg.inference.tiling import Source, add_probability, blank, source
from ncseg.models.geometry import Geometry

Transform = tuple[int, bool]  # (quarter turns, then mirrored left-right)

TRANSFORMS: dict[str, tuple[Transform, ...]] = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True), (2, False), (2, True)),  # identity, left-right, both axes, up-down
    "d4": tuple((k, mirror) for k in range(4) for mirror in (False, True)),
}


def turn(image: np.ndarray, transform: Transform) -> np.ndarray:
    """Transform the last two axes of a (..., H, W) array, as a view of it: what is written to the view lands in
    the array at the pixel it was turned from."""
    k, mirror = transform
    turned = np.rot90(image, k, axes=(-2, -1))
    return turned[..., ::-1] if mirror else turned


def predict_tta(
    nets: Sequence[nn.Module], geometry: Geometry, image: np.ndarray | Source, tta: TTA, **tiling: Any
) -> np.ndarray:
    """`predict_proba` averaged over the transforms of `tta` (each answer turned back first); `none` is
    `predict_proba` itself, at no extra cost."""
    transforms = TRANSFORMS[tta]
    src = source(image)
    total = blank(nets, src.shape[1:])
    for transform in transforms:
        turned = src.turned(partial(turn, transform=transform))
        add_probability(nets, geometry, turned, turn(total, transform), **tiling)  # into `total`, turned back
    total /= len(transforms)
    return total


def spread_transforms(tta: TTA) -> tuple[Transform, ...]:
    """The views an uncertainty is measured over: the served ones, but at least the four mirror images, since one
    view has no spread (see ncseg.uncertainty)."""
    return TRANSFORMS[tta] if len(TRANSFORMS[tta]) >= len(TRANSFORMS["flip"]) else TRANSFORMS["flip"]


def predict_views(
    nets: Sequence[nn.Module], geometry: Geometry, image: np.ndarray | Source, tta: TTA, **tiling: Any
) -> Iterator[np.ndarray]:
    """Each net's probability for each view of `spread_transforms(tta)`, turned back, one map at a time: the members
    are not averaged here, their disagreement is part of the spread."""
    src = source(image)
    for transform in spread_transforms(tta):
        turned = src.turned(partial(turn, transform=transform))
        for net in nets:
            answer = blank([net], src.shape[1:])
            add_probability([net], geometry, turned, turn(answer, transform), **tiling)
            yield answer
