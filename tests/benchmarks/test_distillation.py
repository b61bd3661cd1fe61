"""Distillation: a student learns the teacher's soft probabilities on the fit images, and nothing else changes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks.distillation import distill, teacher_targets
from ncseg.config import UNet4Params
from ncseg.data.dataset import CropBatches, augmentations
from ncseg.inference.tiling import predict_proba
from ncseg.models.unet import UNet4

from ..builders import noise_samples, tiny_train_params

SPEC = UNet4Params(kind="unet4", base_channels=4, dropout=0.0, padding="same", l2=0.0, weight_decay=0.0)


def _constant_net(p: float) -> UNet4:
    """A net whose probability is p everywhere: all weights 0, the head's bias logit(p)."""
    net = UNet4(base_channels=4, dropout=0.0).eval()
    with torch.no_grad():
        for w in net.parameters():
            w.zero_()
        net.head.bias.fill_(float(np.log(p / (1 - p))))
    return net


def test_a_soft_target_is_cropped_with_the_image_and_a_mask_stays_binary():
    samples = noise_samples()
    ramp = np.tile(np.linspace(0.1, 0.9, 96, dtype=np.float32), (96, 1))
    soft = [replace(s, target=ramp) for s in samples]
    x, y = CropBatches(soft, 64, 64, 1, augmentations(64, 1, 0.0, False), size=8, n_batches=1)[0]
    values = np.unique(y.numpy())
    assert values.min() >= 0.1 - 1e-6 and values.max() <= 0.9 + 1e-6 and len(values) > 10, "the ramp, not 0/1"
    _, hard = CropBatches(samples, 64, 64, 1, augmentations(64, 1, 0.0, False), size=8, n_batches=1)[0]
    assert set(np.unique(hard.numpy())) <= {0.0, 1.0}
    assert x.shape == hard.shape == y.shape


@pytest.mark.parametrize("tta", ["none", "d4"])
def test_the_target_is_the_teachers_mean_probability_and_the_mask_is_kept(tta):
    samples = noise_samples()
    targets = teacher_targets([_constant_net(0.2), _constant_net(0.6)], samples, tta, tiny_train_params())
    for s, t in zip(samples, targets, strict=True):
        assert np.allclose(t.target, 0.4, atol=0.01), t.target.mean()
        assert np.array_equal(t.mask, s.mask) and t.image is s.image


def test_the_student_learns_the_teachers_probability_not_the_masks():
    """The teacher says 0.3 everywhere; the masks say 0 or 1. A student fitted on the teacher's targets must answer
    about 0.3 on every pixel, which no network fitted on the masks would."""
    samples = noise_samples(3)
    params = tiny_train_params("train.epochs=6", "train.steps_per_epoch=8", "train.lr=0.01", "train.patience=6")
    student = distill(SPEC, [_constant_net(0.3)], samples[:2], samples[2:], params, seed=0, tta="none")
    prob = predict_proba([student], student.geometry, samples[0].image, **params.inference.tiling())
    assert abs(float(prob.mean()) - 0.3) < 0.1 and float(np.percentile(prob, 95)) < 0.6
