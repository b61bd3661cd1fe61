"""Build any configured network by name: the study's U-Net or a segmentation-models-pytorch baseline."""

from __future__ import annotations

import torch
from torch import nn

from ncseg.config import NeuralParams, SmpParams, UNet4Params
from ncseg.models.unet import Geometry, UNet4

SMP_GEOMETRY = Geometry(divisor=32, offset=0, margin=0)  # five stride-2 stages, `same` padding


class SmpNet(nn.Module):
    """An smp model with one greyscale input channel, random init (nothing is ever downloaded)."""

    def __init__(self, p: SmpParams) -> None:
        import segmentation_models_pytorch as smp

        super().__init__()
        self.net = smp.create_model(p.arch, encoder_name=p.encoder, encoder_weights=None, in_channels=1, classes=1)
        self.geometry = SMP_GEOMETRY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_net(p: NeuralParams) -> nn.Module:
    """Every network returned has `.geometry` (ncseg.models.unet.Geometry) and maps (B,1,H,W) to logits."""
    if isinstance(p, UNet4Params):
        return UNet4(p.base_channels, p.dropout, p.padding)
    return SmpNet(p)
