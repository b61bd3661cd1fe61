"""Cross-validation keeps its promises: honest thresholds and checkpoints, and model folders that are never half new."""

import copy

import mlflow
import numpy as np
import pytest
import torch

from ncseg.data.dataset import Sample, load_samples
from ncseg.data.layout import Entry, image_path, mask_path, read_manifest, write_manifest
from ncseg.io.atomic import FolderBusyError, folder_lock
from ncseg.io.images import read_image, read_mask, write_mask, write_tiff
from ncseg.metrics import diameter_error, jaccard
from ncseg.models.zoo import build_net
from ncseg.records import CVSummary, ModelCard
from ncseg.training import cv, loop
from ncseg.training.cv import cross_validate
from ncseg.training.plan import fit_and_validation, plan_repeats
from ncseg.training.report import evaluate
from ncseg.training.scoring import FoldResult, nested_thresholds


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


def _samples(p):
    return load_samples(p.paths.augmented, p.inference)[0]


def _fake_training(monkeypatch, record):
    """Training replaced by a net that predicts its test images from their masks plus seeded noise, recording
    which images each (repeat, fold) network was fitted and validated on and which it predicted."""

    def fake(spec, samples, fold, split, params, progress, on_epoch):
        fit, val, _ = fit_and_validation(samples, split.folds, fold.fold, params.cv.inner_val_fraction, split.seed)
        rng = np.random.default_rng(split.seed + fold.fold)
        probs = [np.clip(samples[i].mask * 0.7 + rng.uniform(0, 0.5, samples[i].mask.shape), 0, 1) for i in fold.test]
        record[(split.index, fold.fold)] = ({s.name for s in fit + val}, [samples[i].name for i in fold.test], probs)
        fold.history = [loop.EpochLog(0, 0.5, 0.5, 0.5, 0.5)]
        return build_net(spec, 1), probs, {"seed": split.seed + fold.fold}

    monkeypatch.setattr(cv, "_train_fold", fake)


def test_repeats_log_r_times_k_child_runs_with_their_own_seeds_and_keep_repeat_0_as_the_plain_cv(study, tmp_path):
    params, folder, _ = study
    p1, p2 = params(), params(2, "cv.repeats=2")
    plain, repeated = plan_repeats(_samples(p1), p1), plan_repeats(_samples(p2), p2)
    assert repeated[0].folds == plain[0].folds and repeated[0].seed == p1.seed, "repeat 0 is the plain CV"
    assert len({r.seed for r in repeated}) == 2
    summary = cross_validate("unet4", p2, tmp_path)
    assert (summary.repeats, len(summary.jaccard_per_fold), len(summary.jaccard_repeat_means)) == (2, 4, 2)
    assert summary.jaccard_between_repeat_std is not None and summary.ensemble_jaccard_mean is not None
    runs = mlflow.MlflowClient(p2.tracking.uri).search_runs(
        [mlflow.get_experiment_by_name(p2.tracking.experiment).experiment_id], "tags.fold != ''"
    )
    names = sorted(r.info.run_name for r in runs)
    assert names == ["repeat-0-fold-0", "repeat-0-fold-1", "repeat-1-fold-0", "repeat-1-fold-1"]
    assert len({r.data.params["seed"] for r in runs}) == 4, "each (repeat, fold) network has its own seed"
    card = ModelCard.load(folder / "model.json")
    assert [(w.repeat, w.fold, w.file) for w in card.folds] == [
        (0, 0, "fold0.pt"),
        (1, 0, "repeat1-fold0.pt"),
        (0, 1, "fold1.pt"),
        (1, 1, "repeat1-fold1.pt"),
    ], "serving order, each network's repeat and fold recorded beside its file"
    card.verify(folder)


def test_the_ensemble_averages_only_networks_that_never_saw_the_image(study, tmp_path, monkeypatch):
    params, _, _ = study
    p = params(2, "cv.repeats=3", "calibration.method=none")
    record: dict = {}
    _fake_training(monkeypatch, record)
    summary = cross_validate("unet4", p, tmp_path)
    predicted: dict[str, list[np.ndarray]] = {}
    for (_, _), (trained_on, tested, probs) in record.items():
        assert not trained_on & set(tested), "a network predicted an image it was fitted or validated on"
        for name, prob in zip(tested, probs, strict=True):
            predicted.setdefault(name, []).append(prob)
    assert {len(v) for v in predicted.values()} == {3}, "one out-of-fold prediction per image and repeat"
    samples = _samples(p)
    ensemble = {s.name: np.mean(predicted[s.name], axis=0) for s in samples}
    results = [FoldResult(k, plan_repeats(samples, p)[0].test(k), None) for k in range(p.cv.n_folds)]
    probs = {i: ensemble[s.name] for i, s in enumerate(samples)}
    nested_thresholds(results, probs, samples, p)
    expected = [np.mean([jaccard(probs[i] > r.threshold, samples[i].mask) for i in r.test]) for r in results]
    assert summary.ensemble_jaccard_per_fold == pytest.approx(expected)


def test_the_mean_diameter_bias_is_scored_on_the_masks_each_fold_was_scored_on(study, tmp_path, monkeypatch):
    """What a counting user reads: how much larger or smaller the found NCs are on average, fold by fold at the
    fold's own nested threshold, and in summary.md."""
    params, _, _ = study
    p = params(2, "calibration.method=none")
    record: dict = {}
    _fake_training(monkeypatch, record)
    summary = cross_validate("unet4", p, tmp_path)
    samples, by_name = _samples(p), {}
    for _, tested, probs in record.values():
        by_name |= dict(zip(tested, probs, strict=True))
    split = plan_repeats(samples, p)[0]
    errors = [
        diameter_error([by_name[samples[i].name] > t for i in split.test(k)], [samples[i].mask for i in split.test(k)])
        for k, t in enumerate(summary.fold_thresholds)
    ]
    assert summary.diameter_error_mean == pytest.approx(np.mean(errors)) and summary.diameter_error_std is not None
    evaluate(p, tmp_path)
    assert f"{100 * summary.diameter_error_mean:+.1f} %" in (p.paths.metrics / "summary.md").read_text()


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_ones(study, tmp_path, monkeypatch):
    params, _, _ = study
    p = params(2, "cv.repeats=2")
    first, again = cross_validate("unet4", p, tmp_path), cross_validate("unet4", p, tmp_path)
    assert first.jaccard_per_fold == again.jaccard_per_fold and first.temperature == again.temperature
    other = cross_validate("unet4", p.model_copy(update={"seed": p.seed + 1}), tmp_path)
    assert other.jaccard_per_fold != first.jaccard_per_fold


def test_a_near_copy_filed_under_another_group_joins_it_and_the_summary_and_run_say_so(study, tmp_path, monkeypatch):
    """A mirrored copy of synth_00 filed as its own group (a neighbouring slice): CV tests it beside synth_00 in
    every repeat, and the CV summary and the MLflow parent run name the groups it joined."""
    params, _, metrics = study
    p = params(2, "cv.repeats=2")
    folder = p.paths.augmented
    image, mask = read_image(image_path(folder, "synth_00")), read_mask(mask_path(folder, "synth_00"))
    write_tiff(image_path(folder, "copy"), np.fliplr(image.data), image.pixel_size_nm)
    write_mask(mask_path(folder, "copy"), np.fliplr(mask), image.pixel_size_nm)
    write_manifest(folder, [*read_manifest(folder), Entry("copy", "copy", "slice 9", 0)])
    record: dict = {}
    _fake_training(monkeypatch, record)
    summary = cross_validate("unet4", p, tmp_path)
    for trained_on, tested, _ in record.values():
        assert ("copy" in tested) == ("synth_00" in tested) and ("copy" in trained_on) == ("synth_00" in trained_on)
    assert (summary.leak_threshold, summary.groups, summary.joined_groups) == (0.9, 4, (("slice 9", "synth_00"),))
    assert CVSummary.load(metrics).joined_groups == (("slice 9", "synth_00"),)
    client = mlflow.MlflowClient(p.tracking.uri)
    experiment = mlflow.get_experiment_by_name(p.tracking.experiment).experiment_id
    (parent,) = client.search_runs([experiment], "tags.run_kind = 'cv'")
    assert parent.data.params["split.groups"] == "4" and parent.data.tags["split.joined"] == "slice 9 + synth_00"
    leaks = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/leaks.json")
    assert ("synth_00", "copy") in [(q["a"], q["b"]) for q in leaks["pairs"]], "the pair that joined them, by name"
