"""The auxiliary class head: class maps travel from import to the crops, and their loss trains the shared net."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from ncseg.config import AugmentParams, UNet4Params
from ncseg.data.dataset import IGNORE, CropBatches, Sample, augmentations, load_samples
from ncseg.data.importer import ImportRefusedError, import_dataset
from ncseg.data.rotations import augment
from ncseg.io.images import ImageError, list_images, read_mask, write_tiff
from ncseg.models.unet import UNet4
from ncseg.models.zoo import build_net
from ncseg.training.loop import auxiliary_loss, fit_new_net

from ..builders import noise_samples, tiny_train_params

SPEC = UNet4Params(
    kind="unet4", base_channels=4, dropout=0.0, padding="same", l2=0.0, weight_decay=0.0, aux_classes=3, aux_weight=1.0
)


def _class_maps(raw: Path, out: Path) -> Path:
    """Class 1 on the NC mask, 2 on its left half: a map that is not symmetric, so a wrong turn shows."""
    for path in list_images(raw / "masks"):
        mask = read_mask(path)
        classes = mask.astype(np.uint8)
        classes[:, : mask.shape[1] // 2][mask[:, : mask.shape[1] // 2]] = 2
        write_tiff(out / f"{path.stem}.tif", classes, None)
    return out


def test_class_maps_are_imported_and_turned_with_their_rotated_images(small_raw, small_params, tmp_path):
    (tmp_path / "classes").mkdir()
    classes = _class_maps(small_raw, tmp_path / "classes")
    raw = tmp_path / "raw"
    import_dataset(small_raw / "images", small_raw / "masks", raw, classes=classes)
    augment(raw, tmp_path / "aug", small_params.augment, small_params.seed)
    samples, _ = load_samples(tmp_path / "aug", small_params.inference)
    rotated = [s for s in samples if "_rot" in s.name]
    assert rotated and all(s.classes is not None for s in samples)
    for s in samples:
        assert ((s.classes > 0) == s.mask).all(), f"{s.name}: the class map is not aligned with its mask"
    source = {s.name: s for s in samples}
    for s in rotated:
        name, angle = s.name.rsplit("_rot", 1)
        np.testing.assert_array_equal(s.classes, np.rot90(source[name].classes, int(angle) // 90))


def test_a_missing_or_misshapen_class_map_refuses_the_import_naming_the_file(small_raw, tmp_path):
    (tmp_path / "classes").mkdir()
    classes = _class_maps(small_raw, tmp_path / "classes")
    first, second = list_images(classes)[:2]
    first.unlink()
    write_tiff(second, np.zeros((7, 9), np.uint8), None)
    with pytest.raises(ImportRefusedError) as err:
        import_dataset(small_raw / "images", small_raw / "masks", tmp_path / "raw", classes=classes)
    text = str(err.value)
    assert f"no class map named {first.stem}.*" in text
    assert f"{second}: class map shape (7, 9)" in text
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_class_crops_follow_the_image_geometry_and_unmapped_images_are_ignored(padding):
    geometry = UNet4(base_channels=4, padding=padding).geometry
    crop = geometry.fit(64 + 2 * geometry.margin)
    out = crop - 2 * geometry.margin  # a `valid` net answers for the centre only
    samples = noise_samples(2)
    left = np.zeros((96, 96), bool)
    left[:, :30] = True
    mapped = replace(samples[0], classes=np.where(left, 2, samples[0].mask).astype(np.uint8))
    batches = CropBatches([mapped], crop, out, 3, augmentations(crop, 3, 0.0, False), 8, 1, classes=True)
    _, y, classes = batches[0]
    assert classes.dtype == torch.int64 and classes.shape == (8, out, out) == y[:, 0].shape
    assert set(classes.unique().tolist()) <= {0, 1, 2}, "classes were interpolated, not carried"
    inside = classes != 2
    assert ((classes[inside] == 1) == (y[:, 0][inside] == 1)).all(), "the class crop moved apart from the mask crop"
    _, _, unmapped = CropBatches(samples[1:], crop, out, 3, augmentations(crop, 3, 0.0, False), 2, 1, classes=True)[0]
    assert (unmapped == IGNORE).all()


def test_the_aux_head_leaves_inference_and_old_cards_alone():
    old_card_spec = {"kind": "unet4", "base_channels": 4, "dropout": 0.0, "padding": "same", "l2": 0.0}
    plain = build_net(UNet4Params(**old_card_spec, weight_decay=0.0), 1)  # a card written before the head
    plain.load_state_dict(UNet4(base_channels=4, dropout=0.0).state_dict())
    aux = build_net(SPEC, 1).eval()
    x = torch.rand(2, 1, 32, 32)
    binary, class_logits = aux.forward_with_aux(x)
    assert torch.equal(aux(x), binary) and binary.shape == (2, 1, 32, 32) and class_logits.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="no auxiliary head"):
        plain.forward_with_aux(x)


def _with_classes(samples: list[Sample], top: int = 2) -> list[Sample]:
    return [replace(s, classes=(s.mask * (1 + (s.image[0] > 0.75))).astype(np.uint8).clip(0, top)) for s in samples]


def test_training_with_the_head_fits_the_classes_and_leaves_the_binary_log_comparable():
    params = tiny_train_params("train.epochs=2", "train.steps_per_epoch=3")
    torch.manual_seed(7)
    before = build_net(SPEC, len(params.inference.normalization)).aux_head.weight.detach().clone()
    net, history = fit_new_net(SPEC, _with_classes(noise_samples(2)), noise_samples(1), params, seed=7)
    assert not torch.equal(net.aux_head.weight.detach(), before)
    assert all(0 < h.train_loss < 2 for h in history), "the logged loss is the binary one (BCE + Dice < 2)"


def test_a_batch_without_any_class_map_adds_nothing_rather_than_nan():
    loss = auxiliary_loss(SPEC, _with_classes(noise_samples(1)))
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    ignored = loss(logits, torch.full((2, 8, 8), IGNORE))
    ignored.backward()
    assert ignored.item() == 0 and torch.isfinite(logits.grad).all() and not logits.grad.any()
    assert loss(logits, torch.randint(0, 3, (2, 8, 8))).item() > 0


def test_an_aux_head_without_class_maps_or_with_too_many_classes_is_refused():
    params = tiny_train_params("train.epochs=1", "train.steps_per_epoch=1")
    with pytest.raises(ValueError, match="no training image has a class map"):
        fit_new_net(SPEC, noise_samples(2), noise_samples(1), params, seed=0)
    with pytest.raises(ValueError, match=r"of s0 \(max 2\), s1 \(max 2\) hold classes >= 2"):
        fit_new_net(
            SPEC.model_copy(update={"aux_classes": 2}), _with_classes(noise_samples(2)), noise_samples(1), params, 0
        )
    for unpaired in ({"aux_classes": 0}, {"aux_weight": 0.0}):
        with pytest.raises(pydantic.ValidationError, match="go together"):
            UNet4Params(**{**SPEC.model_dump(), **unpaired})


def test_augment_without_class_maps_writes_none(small_raw, tmp_path):
    augment(small_raw, tmp_path / "aug", AugmentParams(n_rotated=1, angles=[90]), 0)
    assert not (tmp_path / "aug" / "classes").exists()


def test_a_class_map_edited_out_of_shape_or_left_without_image_is_named(small_raw, small_params, tmp_path):
    (tmp_path / "classes").mkdir()
    raw = tmp_path / "raw"
    import_dataset(small_raw / "images", small_raw / "masks", raw, classes=_class_maps(small_raw, tmp_path / "classes"))
    aug = tmp_path / "aug"
    augment(raw, aug, small_params.augment, small_params.seed)
    bad = list_images(aug / "classes")[0]
    write_tiff(bad, np.zeros((5, 5), np.uint8), None)
    with pytest.raises(ImageError, match=f"{bad}: class map shape \\(5, 5\\)"):
        load_samples(aug, small_params.inference)
    write_tiff(raw / "classes" / "stray.tif", np.zeros((5, 5), np.uint8), None)
    with pytest.raises(ValueError, match="class maps without an image: stray"):
        augment(raw, aug, small_params.augment, small_params.seed)
