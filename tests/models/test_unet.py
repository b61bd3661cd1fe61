import numpy as np
import pytest
import torch

from ncseg.inference.tiling import predict_proba
from ncseg.models.unet import UNet4, l2_penalty
from ncseg.models.zoo import build_net

FP32 = {"batch_tiles": 4, "precision": "fp32"}


@pytest.mark.parametrize("size", [64, 96, 160])
def test_same_padding_keeps_the_input_size(size):
    net = UNet4(base_channels=4, padding="same").eval()
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 1, size, size)


@pytest.mark.parametrize("size", [188, 204, 236, 572])
def test_valid_padding_shrinks_by_the_original_unets_margin(size):
    net = UNet4(base_channels=4, padding="valid").eval()
    out = net(torch.zeros(1, 1, size, size)).shape[-1]
    assert out == size - 2 * net.geometry.margin == net.output_size(size)
    assert net.geometry.margin == 92  # as Ronneberger's 572 -> 388


def test_valid_geometry_rejects_sizes_the_poolings_cannot_divide():
    net = UNet4(base_channels=4, padding="valid")
    assert net.output_size(200) is None
    assert net.geometry.fit(200) == 204 and net.output_size(204) == 20


def test_four_blocks_each_way_and_one_logit():
    net = UNet4(base_channels=8)
    assert len(net.encoder) == len(net.decoder) == 4
    assert [b[0].out_channels for b in net.encoder] == [8, 16, 32, 64]
    assert net.bottleneck[0].out_channels == 128 and net.head.out_channels == 1


def test_l2_penalty_is_keras_l2_on_every_kernel_not_bias():
    net = UNet4(base_channels=4)
    expected = 0.01 * sum(
        float((m.weight.detach() ** 2).sum())
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    )
    assert float(l2_penalty(net.kernels(), 0.01).detach()) == pytest.approx(expected, rel=1e-5)
    assert all(k.dim() == 4 for k in net.kernels())


@pytest.mark.parametrize(("padding", "context"), [("valid", 0), ("same", 128)])
@pytest.mark.parametrize("shape", [(150, 170), (97, 300)])
def test_overlap_tiling_equals_whole_image_inference(padding, context, shape):
    torch.manual_seed(0)
    net = UNet4(base_channels=4, dropout=0.0, padding=padding).eval()
    with torch.no_grad():  # make the output depend on the input, not only on the biases
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(3)
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    whole = predict_proba([net], net.geometry, image, tile=2048, context=context, **FP32)
    tiled = predict_proba(
        [net], net.geometry, image, tile=2 * context + 64 if context else 204, context=context, **FP32
    )
    assert whole.shape == tiled.shape == shape
    assert whole.std() > 1e-4
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_any_image_size_gets_a_full_mask_from_every_model(params):
    image = np.random.default_rng(2).random((75, 131), dtype=np.float32)
    for name in ("unet4", "smp-unet-resnet18"):
        net = build_net(params.model(name), 1).eval()
        assert predict_proba([net], net.geometry, image, tile=64, context=16, **FP32).shape == (75, 131)


def test_ensemble_is_the_mean_of_member_probabilities():
    torch.manual_seed(3)
    nets = [UNet4(base_channels=4, dropout=0.0).eval() for _ in range(2)]
    image = np.random.default_rng(3).random((64, 64), dtype=np.float32)
    single = [predict_proba([n], n.geometry, image, tile=64, context=0, **FP32) for n in nets]
    np.testing.assert_allclose(
        predict_proba(nets, nets[0].geometry, image, tile=64, context=0, **FP32), (single[0] + single[1]) / 2, atol=1e-6
    )


def test_channels_last_networks_give_the_same_probabilities():
    """The served model runs channels-last (oneDNN's fast path); that must not change what it predicts."""
    torch.manual_seed(4)
    net = UNet4(base_channels=4, dropout=0.0, in_channels=2).eval()
    image = np.random.default_rng(4).random((2, 90, 70), dtype=np.float32)
    plain = predict_proba([net], net.geometry, image, tile=64, context=16, **FP32)
    fast = predict_proba([net.to(memory_format=torch.channels_last)], net.geometry, image, tile=64, context=16, **FP32)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
