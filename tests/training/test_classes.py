"""A study of more than two classes trains K softmax outputs on class maps and is scored class by class; a binary
study keeps its one sigmoid output."""

import csv
import shutil

import mlflow
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.config import load_params
from ncseg.data.dataset import IGNORE
from ncseg.data.layout import class_map_path, image_path, mask_path, read_manifest
from ncseg.data.rotations import augment
from ncseg.inference.tiling import predict_proba
from ncseg.io.images import list_images, read_image, read_mask, write_tiff
from ncseg.labels import LabelSet
from ncseg.metrics import class_scores, headline, score
from ncseg.models import classical
from ncseg.models.zoo import build_net
from ncseg.records import CVSummary, ModelCard
from ncseg.registry.promote import register_best, serving_config
from ncseg.serving.protocol import encode_request
from ncseg.training.cv import cross_validate
from ncseg.training.loop import class_loss
from ncseg.training.report import evaluate, markdown_table

from ..conftest import ROOT
from ..test_labels import THREE
from .conftest import TINY_UNET


def _three() -> LabelSet:
    return load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=0"]).labels


def test_a_k_class_net_answers_one_probability_per_class_that_sum_to_one_tiled_as_whole():
    torch.manual_seed(0)
    net = build_net(load_params(ROOT / "params.yaml").models["unet4"], 1, outputs=3).eval()
    image = np.random.default_rng(0).uniform(0, 1, (1, 200, 152)).astype(np.float32)
    whole = predict_proba([net], net.geometry, image, tile=512, context=32, batch_tiles=2, precision="fp32")
    tiled = predict_proba([net], net.geometry, image, tile=96, context=32, batch_tiles=2, precision="fp32")
    assert whole.shape == (3, 200, 152)
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def _train(loss: str, *more: str):
    """A 3-class study's train settings with `loss` (and `more` overrides)."""
    return load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=0", f"train.loss={loss}", *more]).train


def test_the_class_loss_rewards_the_right_class_weights_the_rare_one_and_skips_ignored_pixels():
    loss = class_loss(_train("bce_dice"), _three())
    target = torch.tensor([[[0, 1], [2, IGNORE]]])
    right = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 8
    assert loss(right, target) < loss(torch.zeros_like(right), target)
    wrong_at_ignored = right.clone()
    wrong_at_ignored[0, :, 1, 1] = torch.tensor([9.0, -9.0, -9.0])
    assert loss(wrong_at_ignored, target) == pytest.approx(loss(right, target).item(), abs=1e-6)
    pt_missed, support_missed = right.clone(), right.clone()
    pt_missed[0, :, 1, 0] = torch.tensor([8.0, 0.0, 0.0])  # the weight-2 class called background
    support_missed[0, :, 0, 1] = torch.tensor([8.0, 0.0, 0.0])  # a weight-1 class called background
    ce = class_loss(_train("bce_dice"), _three())
    assert ce(pt_missed, target) > ce(support_missed, target)


def test_a_batch_of_ignored_pixels_only_costs_nothing_with_every_loss():
    target = torch.full((1, 4, 4), IGNORE)
    for kind in ("bce_dice", "focal_dice", "bce_lovasz", "focal"):
        value = class_loss(_train(kind), _three())(torch.randn(1, 3, 4, 4, requires_grad=True), target)
        assert value.shape == () and torch.isfinite(value), kind


def test_a_class_maps_headline_averages_the_foreground_classes_and_counts_objects_of_particle_classes_only():
    labels = _three()
    truth = np.zeros((20, 20), np.uint8)
    truth[:10] = 1
    truth[12:16, 12:16] = 2
    pred = truth.copy()
    pred[12:16, 12:14] = 1  # half the Pt particle called support
    per_class = class_scores(pred, truth, labels)
    assert per_class[1].jaccard == score(pred == 1, truth == 1).jaccard
    assert per_class[2].jaccard == pytest.approx(0.5)
    head = headline(per_class, labels)
    assert head.jaccard == pytest.approx((per_class[1].jaccard + per_class[2].jaccard) / 2)
    assert head.object_f1 == per_class[2].object_f1  # the support's one "object" does not count


@pytest.fixture
def three_class_study(small_raw, tmp_path, monkeypatch):
    """The small synthetic set with a class map per image: NCs in the left half are class 1, in the right 2."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    raw, work = tmp_path / "raw", tmp_path / "work"
    shutil.copytree(small_raw, raw)
    for path in list_images(raw / "images"):
        mask = read_mask(mask_path(raw, path.stem))
        classes = mask.astype(np.uint8)
        classes[:, mask.shape[1] // 2 :] *= 2
        class_map_path(raw, path.stem).parent.mkdir(exist_ok=True)
        write_tiff(class_map_path(raw, path.stem), classes, None)
    params = load_params(
        ROOT / "params.yaml",
        [
            f"paths={{raw: {raw}, augmented: {work}/aug, models: {work}/models, metrics: {work}/metrics, "
            f"plots: {work}/plots}}",
            THREE,
            "augment.n_rotated=2",
            "cv.n_folds=2",
            "cv.repeats=2",
            "train.epochs=1",
            "train.steps_per_epoch=2",
            "train.batch_size=2",
            "train.crop_px=64",
            "inference.tile=128",
            f"models={{unet4: {TINY_UNET}, otsu: {{kind: classical, sigma_nm: 1.0, min_area_nm2: 4.0}}}}",
            "register.members=1",
            "register.score=pt",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
    )
    augment(params.paths.raw, params.paths.augmented, params.augment, params.seed)
    assert image_path(params.paths.augmented, read_manifest(params.paths.augmented)[0].name).exists()
    return params, tmp_path


def test_a_three_class_study_is_scored_per_class_registered_and_predicted_as_class_maps(three_class_study):
    """train -> evaluate -> register -> `ncseg predict` and `ncseg export bioimageio` on the tiny profile, as a user
    runs a 3-class study."""
    params, root = three_class_study
    summary = cross_validate("unet4", params, root)
    assert summary.decision == "argmax" and summary.threshold is None
    assert set(summary.classes) == {"support", "pt"}
    assert "object_f1_mean" in summary.classes["pt"] and "object_f1_mean" not in summary.classes["support"]
    assert "diameter_error_mean" in summary.classes["pt"] and "diameter_error_mean" not in summary.classes["support"]
    folds = len(summary.jaccard_per_fold)
    assert folds == 4 and summary.ensemble_jaccard_per_fold is not None
    per_class = [summary.classes[c]["jaccard_mean"] for c in ("support", "pt")]
    assert summary.jaccard_mean == pytest.approx(np.mean(per_class))
    saved = CVSummary.load(params.paths.metrics / "cv" / "unet4.json")
    assert saved.classes == summary.classes
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment).experiment_id
    children = [r.data.metrics for r in client.search_runs([experiment]) if "mlflow.parentRunId" in r.data.tags]
    logged = sorted(m["test/pt/jaccard"] for m in children)  # each fold's run shows the class, as the summary does
    assert logged == pytest.approx(sorted(summary.class_jaccard_per_fold["pt"]))
    assert all({"test/pt/object_f1", "test/pt/diameter_error", "test/support/jaccard"} <= set(m) for m in children)
    assert not any("test/support/object_f1" in m for m in children), "object counts of a region class mean nothing"
    assert saved.score_mean("pt") == pytest.approx(summary.classes["pt"]["jaccard_mean"])  # paired on 4 folds
    card = ModelCard.load(params.paths.models / "unet4" / ModelCard.FILE)
    assert card.labels == params.labels
    assert summary.temperature == card.temperature > 0  # fitted on all out-of-fold maps
    assert card.ensemble is not None and card.ensemble.threshold is None  # the 2-network ensemble: argmax, its own T
    assert serving_config(card, params).temperature == card.temperature  # register.members 1: one network's
    both = params.model_copy(update={"registry": params.registry.model_copy(update={"members": 2})})
    assert serving_config(card, both).temperature == card.ensemble.temperature != card.temperature
    assert summary.ece_raw_mean is not None and summary.ece_calibrated_mean is not None
    cross_validate("otsu", params, root)
    evaluate(params, root)
    table = (params.paths.metrics / "summary.md").read_text()
    assert "| model | support Jaccard | pt Jaccard | pt object F1 | pt diameter error | material Jaccard |" in table
    decision = register_best(params, root)
    assert decision.created and decision.architecture == "unet4" and decision.score == "pt"
    assert decision.cv_jaccard == pytest.approx(saved.score_mean("pt"))  # ranked and compared on Pt
    tags = mlflow.MlflowClient(params.tracking.uri).get_model_version(decision.model_name, decision.version).tags
    assert tags["cv_score"] == "pt" and float(tags["cv_score_mean"]) == pytest.approx(decision.cv_jaccard, abs=1e-5)
    image = list_images(params.paths.raw / "images")[0]
    uri = f"models:/{decision.model_name}/{decision.version}"
    env = {"MLFLOW_TRACKING_URI": params.tracking.uri}
    result = CliRunner().invoke(app, ["predict", uri, str(image), "--out", str(root / "pred"), "--rois"], env=env)
    assert result.exit_code == 0, result.output
    classes = read_image(root / "pred" / "classes" / image.name.replace(image.suffix, ".tif")).data
    assert classes.shape == read_image(image).data.shape and set(np.unique(classes)) <= {0, 1, 2}
    assert (root / "pred" / "particles" / f"{image.stem}_pt.csv").is_file()
    assert not (root / "pred" / "particles" / f"{image.stem}_support.csv").exists()
    exported = CliRunner().invoke(
        app, ["export", "bioimageio", uri, str(root / "pt.zip"), "--image", str(image)], env=env
    )
    assert exported.exit_code == 0 and "bioimageio test passed" in " ".join(exported.output.split()), exported.output
    request = encode_request([read_image(image).data])
    with pytest.raises(MlflowException, match="argmax"):
        mlflow.pyfunc.load_model(uri).predict(request, params={"threshold": 0.5})
    args = ["predict", uri, str(image), "--out", str(root / "p2"), "--threshold", "0.5"]
    refused = CliRunner().invoke(app, args, env=env)
    assert refused.exit_code != 0 and "argmax" in refused.output and not (root / "p2" / "masks").exists()


def test_the_classical_baseline_of_a_three_class_study_fits_its_levels_on_each_folds_training_side(
    three_class_study, monkeypatch
):
    params, root = three_class_study
    fitted = []
    real = classical.fit_levels
    monkeypatch.setattr(classical, "fit_levels", lambda images, *a: fitted.append(len(images)) or real(images, *a))
    summary = cross_validate("otsu", params, root)
    n = summary.n_images
    tests = [len(t) for t in _test_sets(params.paths.plots / "otsu" / "folds.csv")]
    assert fitted == [n - t for t in tests], "each fold fitted on exactly the images it does not test"
    assert set(summary.classes) == {"support", "pt"} and summary.kind == "classical"
    # the two classes are the same NCs told apart by position only, which no intensity level sees: the material
    # mask (both as one), what a binary study scores, is still found
    assert summary.material_jaccard_mean > max(summary.classes[c]["jaccard_mean"] for c in ("support", "pt"))
    net = cross_validate("unet4", params, root)
    table = markdown_table({"otsu": summary, "unet4": net})
    assert "| levels |" in table and "| argmax |" in table, table
    assert f"| {summary.material_jaccard_mean:.3f} ± {summary.material_jaccard_std:.3f} |" in table, table


def test_a_class_map_outside_the_label_set_is_named_by_file_before_any_model_folder_is_written(three_class_study):
    params, root = three_class_study
    first = read_manifest(params.paths.augmented)[1].name
    path = class_map_path(params.paths.augmented, first)
    write_tiff(path, np.full(read_mask(mask_path(params.paths.augmented, first)).shape, 7, np.uint8), None)
    with pytest.raises(ValueError, match=rf"{path}: holds class 7, but the label set has 3 classes"):
        cross_validate("unet4", params, root)
    assert not (params.paths.models / "unet4").exists()


def _test_sets(folds_csv):
    with folds_csv.open() as fh:
        return [range(int(row["images"])) for row in csv.DictReader(fh)]


def test_a_binary_summary_file_has_no_class_keys(small_raw, tmp_path):
    summary = CVSummary.model_validate(
        {
            **{f"{k}_{s}": 0.5 for k in ("jaccard", "dice", "precision", "recall") for s in ("mean", "std")},
            **{f"object_{k}_{s}": 0.5 for k in ("precision", "recall", "f1") for s in ("mean", "std")},
            "model": "m",
            "kind": "unet4",
            "n_folds": 2,
            "n_images": 4,
            "threshold": 0.5,
            "study_threshold": 0.75,
            "fold_thresholds": [0.5, 0.5],
            "jaccard_per_fold": [0.5, 0.5],
            "intensity_window": None,
        }
    )
    summary.save(tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text()
    assert '"classes"' not in text and '"decision"' not in text


def test_focal_alone_is_the_weighted_cross_entropy_at_gamma_zero_and_takes_the_recipes_class_weights():
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    weights = torch.tensor([0.2, 0.3, 0.5])[target]
    expected = (ce * weights).sum() / weights.sum()
    recipe = _train("focal", "train.focal_gamma=0.0", "train.class_weights=[0.2, 0.3, 0.5]")
    assert class_loss(recipe, _three())(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)
    focused = _train("focal", "train.focal_gamma=1.0", "train.class_weights=[0.2, 0.3, 0.5]")
    assert class_loss(focused, _three())(logits, target) < class_loss(recipe, _three())(logits, target)
