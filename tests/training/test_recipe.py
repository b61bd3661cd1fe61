"""The training recipe's options (loss, lr schedule, normalisation layer) that the ablations compare."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from ncseg.config import load_params
from ncseg.models.unet import UNet4
from ncseg.training.loop import lr_schedule, segmentation_loss

ROOT = Path(__file__).resolve().parents[2]

LOSSES = ["bce_dice", "focal_dice", "bce_lovasz", "focal"]


def train_with(*overrides: str):
    """The project's train settings with `overrides` (e.g. 'loss=focal')."""
    return load_params(ROOT / "params.yaml", [f"train.{o}" for o in overrides]).train


@pytest.mark.parametrize("kind", LOSSES)
def test_every_loss_prefers_the_right_mask_and_has_a_gradient(kind):
    target = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    right, wrong = (target * 2 - 1) * 4, (1 - target * 2) * 4
    loss = segmentation_loss(train_with(f"loss={kind}"))
    assert loss(right, target) < 0.5 * loss(wrong, target)
    logits = torch.zeros_like(target, requires_grad=True)
    loss(logits, target).backward()
    # the gradient pushes NC pixels up and background down
    assert (logits.grad[target == 1] < 0).all() and (logits.grad[target == 0] > 0).all()


def _lrs(schedule: str) -> list[float]:
    t = load_params(ROOT / "params.yaml", [f"train.schedule={schedule}", "train.epochs=4", "train.steps_per_epoch=5"])
    optimiser = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=t.train.lr)
    scheduler = lr_schedule(optimiser, t.train)
    seen = []
    for _ in range(t.train.epochs * t.train.steps_per_epoch):
        seen.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    return seen


def test_schedules_span_the_planned_steps():
    lr = load_params(ROOT / "params.yaml").train.lr
    assert _lrs("constant") == [lr] * 20
    cosine = _lrs("cosine")
    assert cosine[0] == pytest.approx(lr) and cosine[-1] < 0.02 * lr
    assert all(a >= b for a, b in itertools.pairwise(cosine))
    onecycle = _lrs("onecycle")
    assert max(onecycle) == pytest.approx(lr, rel=0.01) and onecycle[0] < 0.1 * lr and onecycle[-1] < 0.01 * lr


def test_the_study_net_keeps_its_weight_names_so_saved_weights_load():
    plain = UNet4(base_channels=4).state_dict()
    assert "encoder.0.2.weight" in plain  # conv, ReLU, conv: the layout every saved fold<k>.pt has
    UNet4(base_channels=4, norm="none").load_state_dict(plain)


@pytest.mark.parametrize("norm", ["batch", "instance", "group"])
def test_normalised_nets_learn_one_step_and_keep_the_shape(norm):
    torch.manual_seed(0)
    net = UNet4(base_channels=8, dropout=0.0, norm=norm)
    assert any(
        isinstance(m, torch.nn.modules.normalization.GroupNorm | torch.nn.modules.batchnorm._NormBase)
        for m in net.modules()
    )
    x = torch.rand(4, 1, 64, 64)
    y = (x > 0.5).float()
    loss = segmentation_loss(train_with("loss=bce_dice"))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = loss(net(x), y).item()
    for _ in range(5):
        optimiser.zero_grad()
        loss(net(x), y).backward()
        optimiser.step()
    assert net(x).shape == (4, 1, 64, 64)
    assert loss(net(x), y).item() < before


def test_a_models_own_train_keys_replace_the_studys_for_that_model_only():
    from ncseg.config import ConfigError
    from ncseg.training.loop import fit_new_net

    from ..builders import noise_samples, tiny_train_params

    params = tiny_train_params(
        "train.epochs=3",
        "train.steps_per_epoch=2",
        "models.recipe={kind: unet4, base_channels: 4, dropout: 0.0, padding: same, l2: 0.0, weight_decay: 0.0,"
        " train: {epochs: 1, loss: focal, focal_gamma: 1.0, patience: 1}}",
    )
    own = params.train.for_model(params.models["recipe"].train)
    assert (own.epochs, own.loss, own.focal_gamma, own.lr) == (1, "focal", 1.0, params.train.lr)
    _, history = fit_new_net(params.models["recipe"], noise_samples(2), noise_samples(1), params, seed=1)
    assert len(history) == 1  # its own schedule: one epoch where the study runs three
    _, history = fit_new_net(params.models["unet4"], noise_samples(2), noise_samples(1), params, seed=1)
    assert len(history) == 3
    with pytest.raises(ConfigError, match=r"models\.unet4\.train: loss: Input should be"):
        load_params(ROOT / "params.yaml", ["models.unet4.train={loss: dice}"])
    with pytest.raises(ConfigError, match=r"models\.unet4\.train\.class_weights: 3 weights for 2 classes"):
        load_params(ROOT / "params.yaml", ["models.unet4.train={class_weights: [0.2, 0.3, 0.5]}"])


def test_the_published_pt_alumina_unet_is_a_deeper_average_pooled_member_of_the_family():
    """Genc, Kovarik & Fraser 2022: six levels from 32 to 1024 channels (five poolings), average pooling,
    transposed convolutions, a softmax over the three classes."""
    from ncseg.models.zoo import build_net

    spec = load_params(
        ROOT / "params.yaml",
        [
            "models.unet4={kind: unet4, base_channels: 32, depth: 5, pooling: avg, dropout: 0.0, padding: same,"
            " l2: 0.0, weight_decay: 0.0}"
        ],
    ).models["unet4"]
    net = build_net(spec, 1, outputs=3).eval()
    widths = [block[0].out_channels for block in net.encoder] + [net.bottleneck[0].out_channels]
    assert widths == [32, 64, 128, 256, 512, 1024]
    assert isinstance(net.pool, torch.nn.AvgPool2d) and net.geometry.divisor == 32
    with torch.no_grad():
        assert net(torch.rand(1, 1, 64, 96)).shape == (1, 3, 64, 96)
    assert net.output_size(48) is None  # 48 is not a multiple of 2^5: tiling must round to the divisor
