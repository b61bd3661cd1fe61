import numpy as np
import pytest

from ncseg.normalization import intensity_window, normalize, views


def _field(hot_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Background ~10 and material ~60 counts (8 bit) as in the shared HAADF data, plus a share of very bright
    Pt-like pixels (240) that moves the image's own upper percentile."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((100, 100), bool)
    mask[:20] = True
    image = np.where(mask, 60, 10) + rng.normal(0, 3, mask.shape)
    image[20 : 20 + int(100 * hot_fraction)] = 240
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_dataset_window_keeps_material_at_one_level_whatever_else_is_in_the_field():
    fields = [_field(f, i) for i, f in enumerate((0.0, 0.01))]
    window = intensity_window([im for im, _ in fields])
    levels = [normalize(im, window)[mask].mean() for im, mask in fields]
    assert levels[0] == pytest.approx(levels[1], abs=0.02)
    per_image = [normalize(im)[mask].mean() for im, mask in fields]
    assert abs(per_image[0] - per_image[1]) > 0.3, "per-image percentiles depend on the field's content"


def test_a_higher_top_percentile_keeps_a_rare_bright_class_apart_from_the_brightest_material():
    """Pt-like pixels (0.2 % at 240) above material (60, and its brightest noise): the study's 99.5th percentile
    flattens Pt onto the material's top; the window's top at the maximum keeps them apart."""
    rng = np.random.default_rng(3)
    image = np.clip(np.where(np.arange(200)[:, None] < 100, 60, 10) + rng.normal(0, 3, (200, 200)), 0, 255)
    image[:2, :40] = 240
    pt, material = np.zeros(image.shape, bool), np.zeros(image.shape, bool)
    pt[:2, :40], material[2:100] = True, True
    bright_material = np.percentile(image[material], 99.9)
    study, full = intensity_window([image]), intensity_window([image], (0.5, 100.0))
    assert normalize(image, study)[pt].min() == normalize(image, study)[image >= bright_material].max() == 1.0
    assert normalize(image, full)[pt].min() - normalize(image, full)[material].max() > 0.5


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_per_image_normalisation_is_float32_in_the_unit_interval(dtype):
    image = (np.random.default_rng(0).random((64, 64)) * 200 + 50).astype(dtype)
    out = normalize(image)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0


def test_flat_image_normalises_to_zeros_not_nan():
    assert not normalize(np.full((8, 8), 7, np.uint16)).any()
    assert not normalize(np.full((8, 8), 7.0, np.float32), (7.0, 7.0)).any()


def test_views_stack_one_channel_per_normalisation_in_order():
    image, _ = _field(0.01, 0)
    window = (5.0, 80.0)
    stacked = views(image, ["dataset", "image"], window)
    assert stacked.shape == (2, *image.shape) and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked[0], normalize(image, window))
    np.testing.assert_array_equal(stacked[1], normalize(image))
    with pytest.raises(ValueError, match="intensity window"):
        views(image, ["dataset"], None)


@pytest.mark.parametrize(("shape", "tile", "context"), [((70, 90), 24, 4), ((5, 3), 64, 8), ((1, 37), 16, 2)])
def test_tiles_cut_by_index_see_the_mirror_padded_image(shape, tile, context):
    """Tiles are cut from the image by index, never from a padded copy of it: past the border they see np.pad's
    mirror ('edge' for an image one pixel wide), mirrored again where the context is longer than the image."""
    import torch

    from ncseg.inference.tiling import predict_proba

    from .test_tta import SymmetricNet

    net = SymmetricNet().eval()
    image = np.random.default_rng(8).random((1, *shape), dtype=np.float32)
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)), mode="reflect" if min(shape) > 1 else "edge")
    with torch.no_grad():
        whole = torch.sigmoid(net(torch.from_numpy(padded)[None]))[0, 0, 1:-1, 1:-1].numpy()
    tiled = predict_proba([net], net.geometry, image, tile=tile, context=context, batch_tiles=3, precision="fp32")
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
