"""The out-of-distribution check: images at another scale or with other contrast are flagged, new images of the
training kind are not, and model cards written before the domain existed still load."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ncseg.data.synth import generate, write_dataset
from ncseg.io.images import read_image
from ncseg.ood import Domain, check, training_domain
from ncseg.records import ModelCard, ServingConfig


@dataclass(frozen=True)
class Training:
    raw: np.ndarray
    pixel_size_nm: float | None


def _images(folder: Path) -> list[Training]:
    return [Training(im.data, im.pixel_size_nm) for im in map(read_image, sorted((folder / "images").glob("*.tif")))]


@pytest.fixture(scope="module")
def training(small_raw) -> list[Training]:
    return _images(small_raw)


@pytest.fixture(scope="module")
def domain(training) -> Domain:
    return training_domain(training)


def test_training_images_and_new_images_of_the_same_kind_are_in_the_domain(training, domain, small_params, tmp_path):
    assert all(check(t.raw, t.pixel_size_nm, domain) == [] for t in training)
    write_dataset(generate(small_params.data.synth, seed=777), tmp_path, small_params.data.synth.pixel_size_nm)
    new = _images(tmp_path)
    assert [check(t.raw, t.pixel_size_nm, domain) for t in new] == [[]] * len(new)


@pytest.mark.parametrize("factor", [5.0, 0.2])
def test_a_pixel_size_five_times_outside_the_training_range_is_flagged(training, domain, factor):
    image = training[0]
    (reason,) = check(image.raw, image.pixel_size_nm * factor, domain)
    assert f"pixel size {image.pixel_size_nm * factor:.3g} nm is outside the training range" in reason


def test_an_image_without_a_pixel_size_is_judged_on_its_intensities(training, domain):
    assert check(training[0].raw, None, domain) == []


def test_inverted_contrast_is_flagged(training, domain):
    raw = training[0].raw
    reasons = check(raw.max() - raw, training[0].pixel_size_nm, domain)
    assert any("inverted" in r for r in reasons) and len(reasons) >= 2, reasons


def test_a_saturated_detector_is_flagged(training, domain):
    raw = training[0].raw
    clipped = np.minimum(raw, np.percentile(raw, 97).astype(raw.dtype))  # the brightest 3 % pile up at one value
    (reason,) = check(clipped, training[0].pixel_size_nm, domain)
    assert "saturated" in reason


def test_uncalibrated_training_images_leave_the_scale_unchecked(training):
    domain = training_domain([Training(t.raw, None) for t in training])
    assert domain.pixel_size_nm is None
    assert check(training[0].raw, 123.0, domain) == []


def test_no_training_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one training image"):
        training_domain([])


OLD_CARD = {  # a model.json as `train` wrote it before cards recorded the training domain
    "name": "unet4",
    "spec": {"kind": "unet4", "base_channels": 16, "dropout": 0.2, "padding": "same", "l2": 0.01, "weight_decay": 0.0},
    "threshold": 0.4,
    "folds": [{"file": "fold0.pt", "sha256": "0" * 64}],
    "cv_jaccard_mean": 0.94,
    "cv_jaccard_std": 0.01,
    "normalization": ["image"],
    "intensity_window": None,
    "tta": "none",
    "cv_run_id": "c359f1bfe8484c11a7101936a7dc07c0",
}


def test_old_cards_load_without_a_domain_and_new_ones_keep_it(domain, tmp_path):
    (tmp_path / "old.json").write_text(json.dumps(OLD_CARD))
    assert ModelCard.load(tmp_path / "old.json").domain is None
    ModelCard.model_validate(OLD_CARD | {"domain": domain.model_dump()}).save(tmp_path / "new.json")
    assert ModelCard.load(tmp_path / "new.json").domain == domain
    assert ServingConfig.model_fields["domain"].default is None, "a model served before the domain existed loads"
