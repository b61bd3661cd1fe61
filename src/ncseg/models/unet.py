"""The study's four-block U-Net (Ronneberger et al. 2015, scaled down), in `same` or `valid` padding; `depth` and
`pooling` re-create other members of the family (the published Pt/alumina U-Net: five poolings, 32 -> 1024
channels, average pooling) with the same code.

`valid` is the original: every output pixel sees its full receptive field, so the output is smaller than the
input by a fixed margin and whole images are segmented by overlap-tiling (see ncseg.inference). `same` keeps
the size, which makes training on small crops cheaper. The study's regulariser (L2 0.01 on the kernels, Keras'
`kernel_regularizer=l2(0.01)`) is `l2_penalty`, added to the loss by the training loop.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ncseg.config import Norm
from ncseg.models.geometry import Geometry

GROUPS = 8  # GroupNorm's groups (Wu & He 2018), fewer where a layer has fewer channels


def norm_layers(kind: Norm, channels: int) -> list[nn.Module]:
    """A normalisation after a conv. BatchNorm's statistics are noisy at batch 8; Instance/GroupNorm are not.
    None adds no module, so the study's net keeps its weight names (and saved weights keep loading)."""
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "instance":
        return [nn.InstanceNorm2d(channels, affine=True)]
    if kind == "group":
        return [nn.GroupNorm(min(GROUPS, channels), channels)]
    return []


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, padding: int, norm: Norm = "none") -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=padding),
            *norm_layers(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=padding),
            *norm_layers(norm, c_out),
            nn.ReLU(inplace=True),
        )


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    dy, dx = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., dy : dy + size[0], dx : dx + size[1]]


class UNet4(nn.Module):
    """Four encoder blocks (2 x conv3x3+ReLU, max-pool), dropout, bottleneck, four mirrored decoder blocks (or
    `depth` of each, pooled by max or average)."""

    def __init__(
        self,
        base_channels: int = 16,
        dropout: float = 0.2,
        padding: Literal["same", "valid"] = "same",
        in_channels: int = 1,
        norm: Norm = "none",
        aux_classes: int = 0,
        outputs: int = 1,
        depth: int = 4,
        pooling: Literal["max", "avg"] = "max",
    ) -> None:
        super().__init__()
        pad = 1 if padding == "same" else 0
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.padding = padding
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out, pad, norm)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2)
        self.dropout = nn.Dropout2d(dropout)  # at the end of the contracting path, as in the original U-Net
        self.bottleneck = DoubleConv(widths[-2], widths[-1], pad, norm)
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, stride=2) for w in reversed(widths[:-1]))
        self.decoder = nn.ModuleList(DoubleConv(w * 2, w, pad, norm) for w in reversed(widths[:-1]))
        self.head = nn.Conv2d(widths[0], outputs, 1)  # 1: the binary logit; C: one per class (ncseg.labels)
        self.outputs = outputs
        # Training-only: class logits from the same features, so the auxiliary labels shape what the binary head
        # reads. Inference never calls it; absent (None) it adds no weights, and older weights keep loading.
        self.aux_head = nn.Conv2d(widths[0], aux_classes, 1) if aux_classes else None
        self.geometry = self._geometry()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(binary logits, class logits) for training with the auxiliary head."""
        if self.aux_head is None:
            raise ValueError("this UNet4 has no auxiliary head (aux_classes: 0)")
        features = self.features(x)
        return self.head(features), self.aux_head(features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(self.dropout(x))
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            x = up(x)
            x = block(torch.cat([_center_crop(skip, x.shape[-2:]), x], dim=1))
        return x

    def output_size(self, n: int) -> int | None:
        """Output side for an input side n, or None where the poolings would not divide evenly."""
        shrink = 0 if self.padding == "same" else 4
        for _ in range(self.depth):
            n -= shrink
            if n <= 0 or n % 2:
                return None
            n //= 2
        n -= shrink
        for _ in range(self.depth):
            n = 2 * n - shrink
        return n if n > 0 else None

    def _geometry(self) -> Geometry:
        divisor = 2**self.depth
        offset = next(n for n in range(divisor, 16 * divisor) if self.output_size(n) is not None)
        return Geometry(divisor, offset % divisor, (offset - self.output_size(offset)) // 2)

    def kernels(self) -> list[torch.Tensor]:
        """The convolution kernels the study regularises (biases are not)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def l2_penalty(kernels: list[torch.Tensor], factor: float) -> torch.Tensor:
    """Keras' l2(factor): factor * sum of squared kernel weights, added to the loss."""
    return factor * sum(k.pow(2).sum() for k in kernels)
