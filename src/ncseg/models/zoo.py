"""Build any configured network by name: the study's U-Net or a segmentation-models-pytorch baseline."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ncseg.config import ClassicalParams, NeuralParams, SmpParams, UNet4Params
from ncseg.models.geometry import Geometry
from ncseg.models.unet import UNet4
from ncseg.records import ModelCard

SMP_GEOMETRY = Geometry(divisor=32, offset=0, margin=0)  # five stride-2 stages, `same` padding


class SmpNet(nn.Module):
    """An smp model on greyscale input views, random init (nothing is ever downloaded)."""

    def __init__(self, p: SmpParams, in_channels: int, outputs: int = 1) -> None:
        import segmentation_models_pytorch as smp

        super().__init__()
        self.net = smp.create_model(
            p.arch, encoder_name=p.encoder, encoder_weights=None, in_channels=in_channels, classes=outputs
        )
        self.geometry, self.outputs = SMP_GEOMETRY, outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_net(p: NeuralParams, in_channels: int, outputs: int = 1) -> nn.Module:
    """Every network returned has `.geometry` (ncseg.models.unet.Geometry) and `.outputs`, and maps (B,C,H,W) to
    (B,outputs,H,W) logits; C is the number of normalised views of the image (`inference.normalization`), outputs
    the label set's (`LabelSet.n_outputs`: 1 for a binary study)."""
    if isinstance(p, UNet4Params):
        return UNet4(
            p.base_channels, p.dropout, p.padding, in_channels, p.norm, p.aux_classes, outputs, p.depth, p.pooling
        )
    return SmpNet(p, in_channels, outputs)


def load_ensemble(model_dir: Path) -> tuple[list[nn.Module], Geometry]:
    """The fold networks a CV run saved in `model_dir` (model.json + fold<k>.pt), in eval mode on the CPU.

    Each weights file is checked against the hash its model card recorded, so a folder whose weights are not
    the ones that were scored fails here rather than serving silently."""
    card = ModelCard.load(model_dir / ModelCard.FILE)
    if isinstance(card.spec, ClassicalParams) or not card.folds:
        raise ValueError(f"{model_dir}: {card.name!r} has no trained networks to load")
    card.verify(model_dir)
    nets = []
    for weights in card.folds:
        net = build_net(card.spec, len(card.normalization), card.labels.n_outputs)
        net.load_state_dict(torch.load(model_dir / weights.file, map_location="cpu", weights_only=True))
        nets.append(net.eval())
    return nets, nets[0].geometry
