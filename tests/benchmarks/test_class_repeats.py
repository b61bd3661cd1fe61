"""The classes study by repeat: each image's argmax scored per class and as the material mask a binary study
scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.class_repeats import image_scores
from ncseg.labels import LabelClass, LabelSet

STUDY = Path(__file__).resolve().parents[2] / "studies" / "pt-alumina-classes" / "params.yaml"
THREE = LabelSet(
    (
        LabelClass(name="background", kind="region", colour="#000000"),
        LabelClass(name="support", kind="region", colour="#4060ff"),
        LabelClass(name="pt", kind="particles", colour="#ff3030"),
    )
)


def _probs(pred: np.ndarray) -> np.ndarray:
    """A (3, H, W) probability stack whose argmax is `pred`."""
    return np.stack([(pred == k).astype(np.float32) * 0.8 + 0.1 for k in range(3)])


def test_pt_called_support_costs_both_classes_but_not_the_material():
    truth = np.zeros((32, 32), np.uint8)
    truth[4:28, 4:28] = 1
    truth[10:16, 10:16] = 2
    pred = truth.copy()
    pred[10:16, 10:13] = 1  # half of the Pt particle called support
    row = image_scores(_probs(pred), truth, THREE)
    assert row["material Jaccard"] == 1.0, "every material pixel is still material"
    assert row["pt Jaccard"] == pytest.approx(0.5)
    assert row["support Jaccard"] == pytest.approx((24 * 24 - 36) / (24 * 24 - 18))
    assert row["mean foreground Jaccard"] == pytest.approx((row["pt Jaccard"] + row["support Jaccard"]) / 2)
    assert row["pt object F1"] == 1.0 and "support object F1" not in row, "a region has no objects to count"


def test_material_missed_as_background_lowers_the_material_score():
    truth = np.zeros((32, 32), np.uint8)
    truth[:, :16] = 1
    pred = truth.copy()
    pred[:, :8] = 0
    assert image_scores(_probs(pred), truth, THREE)["material Jaccard"] == pytest.approx(0.5)


def test_a_kept_fold_predicts_again_as_the_network_cv_kept(tmp_path):
    from benchmarks.class_repeats import predicted_again
    from ncseg.config import load_params
    from ncseg.inference.tta import predict_tta
    from ncseg.models.zoo import build_net

    params = load_params(STUDY)
    spec = params.model("unet4")
    torch.manual_seed(0)
    net = build_net(spec, len(params.inference.normalization), params.labels.n_outputs).eval()
    net.to(memory_format=torch.channels_last)  # as training leaves it, and so as CV predicted with it
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    image = np.random.default_rng(0).uniform(0, 1, (len(params.inference.normalization), 48, 48)).astype(np.float32)
    kept = predict_tta([net], net.geometry, image, "none", **params.inference.tiling())

    again, d4 = (predicted_again(tmp_path / "weights.pt", spec, params, [image], t)[0] for t in ("none", "d4"))
    np.testing.assert_array_equal(again, kept, err_msg="the rebuilt network is the one CV kept")
    assert d4.shape == kept.shape == (3, 48, 48)
    np.testing.assert_allclose(d4.sum(0), 1.0, atol=1e-3, err_msg="TTA averages probabilities")
    assert not np.array_equal(d4, kept), "d4 averages other views than the kept one"


def test_the_network_is_the_one_its_fold_cache_folder_is_named_for(tmp_path):
    from benchmarks.class_repeats import network_spec
    from ncseg.config import load_params

    params = load_params(STUDY)
    assert network_spec(params, tmp_path / "unet4" / "0123abcd") == params.models["unet4"]
    with pytest.raises(SystemExit, match="no network"):
        network_spec(params, tmp_path / "classical-levels" / "0123abcd")
    with pytest.raises(SystemExit, match=r"elsewhere.*not <fold_cache>/<model>/<key>.*unet4"):
        network_spec(params, tmp_path / "elsewhere" / "0123abcd")
