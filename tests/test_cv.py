"""Cross-validation keeps its promises: honest thresholds and checkpoints, and model folders that are never half new."""

import copy

import numpy as np
import pytest
import torch

from ncseg.config import load_params
from ncseg.data.augment import augment
from ncseg.data.dataset import Sample
from ncseg.io.atomic import FolderBusyError, folder_lock
from ncseg.models.zoo import build_net
from ncseg.records import ModelCard
from ncseg.training import cv, loop
from ncseg.training.cv import FoldResult, cross_validate, fit_and_validation, nested_thresholds
from ncseg.training.folds import assign_folds

from .conftest import ROOT

TINY_UNET = "{kind: unet4, base_channels: 4, dropout: 0.0, padding: same, l2: 0.0, weight_decay: 0.0}"


@pytest.fixture
def study(small_raw, tmp_path, monkeypatch):
    """A tiny study on the small synthetic set: (params for n folds, the model folder, the metrics file)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = tmp_path / "work"

    def params(n_folds: int = 2):
        return load_params(
            ROOT / "params.yaml",
            [
                f"paths={{raw: {small_raw}, augmented: {work}/aug, models: {work}/models, metrics: {work}/metrics, "
                f"plots: {work}/plots}}",
                "augment.n_rotated=2",
                f"cv.n_folds={n_folds}",
                "train.epochs=1",
                "train.steps_per_epoch=1",
                "train.batch_size=2",
                "train.crop_px=64",
                "inference.tile=128",
                f"models={{unet4: {TINY_UNET}}}",
                "register.members=1",
                f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            ],
        )

    p = params()
    augment(p.paths.raw, p.paths.augmented, p.augment, p.seed)
    return params, work / "models" / "unet4", work / "metrics" / "cv" / "unet4.json"


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_interrupted_training_leaves_the_previous_model_and_its_score_as_they_were(study, monkeypatch, tmp_path):
    params, folder, metrics = study
    cross_validate("unet4", params(), tmp_path)
    before, score = _snapshot(folder), metrics.read_bytes()
    real = cv._train_fold

    def interrupted(spec, samples, fold, *args):
        if fold.fold == 1:
            raise KeyboardInterrupt  # Ctrl-C after fold 0 has written its network
        return real(spec, samples, fold, *args)

    monkeypatch.setattr(cv, "_train_fold", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cross_validate("unet4", params().model_copy(update={"seed": 7}), tmp_path)
    assert _snapshot(folder) == before, "fold0.pt was replaced while model.json kept the old score"
    assert metrics.read_bytes() == score
    assert sorted(p.name for p in folder.parent.iterdir()) == [".unet4.lock", "unet4"], "no staging left behind"


def test_fewer_folds_leave_no_stale_fold_networks(study, tmp_path):
    params, folder, _ = study
    cross_validate("unet4", params(3), tmp_path)
    assert {p.name for p in folder.iterdir()} == {"fold0.pt", "fold1.pt", "fold2.pt", "model.json"}
    cross_validate("unet4", params(2), tmp_path)
    assert {p.name for p in folder.iterdir()} == {"fold0.pt", "fold1.pt", "model.json"}
    ModelCard.load(folder / "model.json").verify(folder)


def test_a_second_training_of_the_same_model_is_refused_while_the_first_runs(study, tmp_path):
    params, folder, _ = study
    with folder_lock(folder), pytest.raises(FolderBusyError, match="another ncseg process is writing it"):
        cross_validate("unet4", params(), tmp_path)
    assert not folder.exists()


def _scaled(name: str, prob_scale: float) -> tuple[Sample, float]:
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    return Sample(name, name, mask.astype(np.float32), mask[None].astype(np.float32), mask, None), prob_scale


def test_a_folds_threshold_is_chosen_without_its_own_images():
    # Fold 0's images are only right at a low threshold, fold 1's only at a high one: each fold must get the other's.
    pairs = [_scaled("a", 0.35), _scaled("b", 0.35), _scaled("c", 0.85), _scaled("d", 0.85)]
    samples = [s for s, _ in pairs]
    probs = {i: np.where(s.mask, scale, 0.2 * scale) for i, (s, scale) in enumerate(pairs)}
    results = [FoldResult(0, [0, 1], "r0"), FoldResult(1, [2, 3], "r1")]
    nested_thresholds(results, probs, samples, [0.1, 0.3, 0.5, 0.7, 0.9])
    assert results[0].threshold in (0.5, 0.7), "fold 0 got a threshold tuned on its own images"
    assert results[1].threshold in (0.1, 0.3)


def test_inner_validation_groups_are_taken_from_the_training_side_and_never_fitted():
    groups = [f"g{i % 7}" for i in range(21)]
    samples = [Sample(f"s{i}", g, np.zeros(1), np.zeros(1), np.zeros(1, bool), None) for i, g in enumerate(groups)]
    folds = assign_folds(groups, 3, seed=1)
    for k in range(3):
        fit, val, inner = fit_and_validation(samples, folds, k, 0.3, seed=1)
        test_groups = {g for g, f in zip(groups, folds, strict=True) if f == k}
        fit_groups, val_groups = {s.group for s in fit}, {s.group for s in val}
        assert val_groups == inner and fit_groups and val_groups
        assert not fit_groups & val_groups and not (fit_groups | val_groups) & test_groups
        assert len(fit) + len(val) + sum(f == k for f in folds) == len(samples)


def test_the_weights_of_the_best_inner_validation_epoch_are_the_ones_kept(study, monkeypatch):
    params, _, _ = study
    p = params().model_copy(update={"train": params().train.model_copy(update={"epochs": 4, "patience": 10})})
    spec = p.models["unet4"]
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (1, 64, 64)).astype(np.float32) for _ in range(2)]
    fit = [Sample(f"f{i}", f"f{i}", im[0], im, im[0] > 0.5, None) for i, im in enumerate(images)]
    scores = iter([0.5, 0.9, 0.3, 0.2])  # epoch 1 is best
    monkeypatch.setattr(loop, "validate", lambda net, val, params: (0.1, 0.0, next(scores)))
    torch.manual_seed(0)
    net = build_net(spec, 1)
    states = {}
    history = loop.train_net(
        net, spec, fit, fit, p, 0, lambda log: states.update({log.epoch: copy.deepcopy(net.state_dict())})
    )
    assert [h.val_jaccard_tuned for h in history] == [0.5, 0.9, 0.3, 0.2]
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, states[1][key], msg=f"{key} is not from the best epoch")
    assert any(not torch.equal(states[1][k], states[3][k]) for k in states[1]), "training changed nothing"
