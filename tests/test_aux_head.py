"""The auxiliary class head: class maps travel from import to the crops, and their loss trains the shared net."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from ncseg.config import AugmentParams, UNet4Params
from ncseg.data.augment import augment
from ncseg.data.dataset import IGNORE, CropBatches, Sample, augmentations, load_samples
from ncseg.data.importer import ImportRefusedError, import_dataset
from ncseg.io.images import list_images, read_mask, write_tiff
from ncseg.models.unet import UNet4
from ncseg.models.zoo import build_net
from ncseg.training.loop import fit_new_net

from .test_distill import _params, _samples

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
    samples, _ = load_samples(tmp_path / "aug", small_params.inference.normalization)
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


def test_class_crops_follow_the_image_geometry_and_unmapped_images_are_ignored():
    samples = _samples(2)
    left = np.zeros((96, 96), bool)
    left[:, :30] = True
    mapped = replace(samples[0], classes=np.where(left, 2, samples[0].mask).astype(np.uint8))
    batches = CropBatches([mapped], 64, 64, 3, augmentations(64, 3, 0.0, False), 8, 1, classes=True)
    _, y, classes = batches[0]
    assert classes.dtype == torch.int64 and classes.shape == (8, 64, 64)
    inside = classes != 2
    assert ((classes[inside] == 1) == (y[:, 0][inside] == 1)).all(), "the class crop moved apart from the mask crop"
    _, _, unmapped = CropBatches(samples[1:], 64, 64, 3, augmentations(64, 3, 0.0, False), 2, 1, classes=True)[0]
    assert (unmapped == IGNORE).all()


def test_the_aux_head_leaves_inference_and_old_weights_alone():
    plain, aux = UNet4(base_channels=4), UNet4(base_channels=4, aux_classes=3)
    assert not any(k.startswith("aux_head") for k in plain.state_dict())
    x = torch.rand(2, 1, 32, 32)
    binary, class_logits = aux.forward_with_aux(x)
    assert aux(x).shape == binary.shape == (2, 1, 32, 32) and class_logits.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="no auxiliary head"):
        plain.forward_with_aux(x)


def _with_classes(samples: list[Sample], top: int = 2) -> list[Sample]:
    return [replace(s, classes=(s.mask * (1 + (s.image[0] > 0.75))).astype(np.uint8).clip(0, top)) for s in samples]


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_only_a_weighted_aux_loss_trains_the_class_head(weight):
    params = _params("train.epochs=1", "train.steps_per_epoch=2")
    spec = SPEC.model_copy(update={"aux_weight": weight})
    torch.manual_seed(7)
    before = build_net(spec, len(params.inference.normalization)).aux_head.weight.detach().clone()
    net, _ = fit_new_net(spec, _with_classes(_samples(2)), _samples(1), params, seed=7)
    moved = not torch.equal(net.aux_head.weight.detach(), before)
    assert moved == (weight > 0)


def test_an_aux_head_without_class_maps_or_with_too_many_classes_is_refused():
    params = _params("train.epochs=1", "train.steps_per_epoch=1")
    with pytest.raises(ValueError, match="no training image has a class map"):
        fit_new_net(SPEC, _samples(2), _samples(1), params, seed=0)
    with pytest.raises(ValueError, match="s0, s1 hold classes >= aux_classes=2"):
        fit_new_net(SPEC.model_copy(update={"aux_classes": 2}), _with_classes(_samples(2)), _samples(1), params, 0)
    with pytest.raises(pydantic.ValidationError, match="aux_weight > 0 needs aux_classes"):
        UNet4Params(**{**SPEC.model_dump(), "aux_classes": 0})


def test_augment_without_class_maps_writes_none(small_raw, tmp_path):
    augment(small_raw, tmp_path / "aug", AugmentParams(n_rotated=1, angles=[90]), 0)
    assert not (tmp_path / "aug" / "classes").exists()
