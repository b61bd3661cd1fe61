"""Test-time augmentation is exact: every transform is undone, and the average does not depend on orientation."""

import numpy as np
import pytest
import torch
from torch import nn

from ncseg.inference.tiling import predict_proba
from ncseg.inference.tta import TRANSFORMS, predict_tta, turn
from ncseg.models.geometry import Geometry
from ncseg.models.unet import UNet4

TILING = {"tile": 256, "context": 16, "batch_tiles": 4, "precision": "fp32"}


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_every_transform_is_exactly_inverted_also_on_non_square_images(mode):
    """A view's answer is written into the turned view of the image's answer: each pixel lands where it came from."""
    image = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    for transform in TRANSFORMS[mode]:
        answer = np.zeros_like(image)
        turn(answer, transform)[...] = turn(image, transform)
        np.testing.assert_array_equal(answer, image)
    assert len({turn(image[0], t).tobytes() for t in TRANSFORMS[mode]}) == len(TRANSFORMS[mode])


class SymmetricNet(nn.Module):
    """A 3x3 kernel with the square's symmetry: rotating or mirroring the image rotates or mirrors the output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[0.1, 0.4, 0.1], [0.4, -1.0, 0.4], [0.1, 0.4, 0.1]])[None, None])
        self.geometry, self.outputs = Geometry(divisor=1, offset=0, margin=0), 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_a_symmetric_network_gives_the_same_answer_with_and_without_tta(mode):
    net = SymmetricNet().eval()
    image = np.random.default_rng(0).random((1, 40, 56), dtype=np.float32)
    plain = predict_proba([net], net.geometry, image, **TILING)
    np.testing.assert_allclose(predict_tta([net], net.geometry, image, mode, **TILING), plain, atol=1e-6)


def test_d4_of_a_turned_image_is_the_turned_d4_answer():
    torch.manual_seed(0)
    net = UNet4(base_channels=4, dropout=0.0).eval()
    image = np.random.default_rng(1).random((1, 64, 64), dtype=np.float32)
    answer = predict_tta([net], net.geometry, image, "d4", **TILING)
    for transform in TRANSFORMS["d4"]:
        turned = predict_tta([net], net.geometry, turn(image, transform), "d4", **TILING)
        np.testing.assert_allclose(turned, turn(answer, transform), atol=1e-6)
    plain = predict_proba([net], net.geometry, turn(image, (1, False)), **TILING)
    assert not np.allclose(plain, turn(predict_proba([net], net.geometry, image, **TILING), (1, False)), atol=1e-4)


def test_none_is_plain_inference():
    torch.manual_seed(0)
    net = UNet4(base_channels=4, dropout=0.0).eval()
    image = np.random.default_rng(2).random((1, 48, 80), dtype=np.float32)
    np.testing.assert_array_equal(
        predict_tta([net], net.geometry, image, "none", **TILING), predict_proba([net], net.geometry, image, **TILING)
    )


def test_uncertainty_views_are_at_least_the_four_mirror_images_per_member():
    from ncseg.inference.tta import predict_views, spread_transforms

    assert spread_transforms("none") == spread_transforms("flip") == TRANSFORMS["flip"]
    assert spread_transforms("d4") == TRANSFORMS["d4"]
    torch.manual_seed(0)
    nets = [UNet4(base_channels=4, dropout=0.0).eval() for _ in range(2)]
    image = np.random.default_rng(3).random((1, 32, 48), dtype=np.float32)
    maps = list(predict_views(nets, nets[0].geometry, image, "none", **TILING))
    assert len(maps) == 4 * 2 and all(m.shape == (32, 48) for m in maps)
    np.testing.assert_allclose(
        np.mean(maps, axis=0), predict_tta(nets, nets[0].geometry, image, "flip", **TILING), atol=1e-6
    )


def test_a_symmetric_network_has_no_spread_across_views():
    from ncseg.inference.tta import predict_views
    from ncseg.uncertainty import pixel_uncertainty

    net = SymmetricNet().eval()
    image = np.random.default_rng(4).random((1, 24, 40), dtype=np.float32)
    spread = pixel_uncertainty(predict_views([net], net.geometry, image, "d4", **TILING))
    np.testing.assert_allclose(spread, 0.0, atol=1e-5)
