"""A stopped cross-validation resumes from its finished folds and ends with the numbers of one uninterrupted run;
folds of other settings, data or code are never taken."""

import mlflow
import pytest
import torch

from ncseg.training import cv
from ncseg.training.cv import cross_validate
from ncseg.training.resume import study_key

from ..builders import noise_samples, tiny_train_params


def _weights(folder):
    return {p.name: torch.load(p, weights_only=True) for p in sorted(folder.glob("*.pt"))}


def test_a_stopped_cv_resumes_from_its_finished_folds_and_ends_with_the_numbers_of_one_run(
    study, monkeypatch, tmp_path
):
    params, folder, _ = study
    plain = cross_validate("unet4", params(3), tmp_path)
    whole = _weights(folder)
    cached = params(3, f"paths.fold_cache={tmp_path}/folds")
    real, trained = cv._train_fold, []

    def stopped_at_fold_2(spec, samples, fold, *args):
        if fold.fold == 2:
            raise KeyboardInterrupt  # Ctrl-C, or the machine taken back, after two folds
        trained.append(fold.fold)
        return real(spec, samples, fold, *args)

    monkeypatch.setattr(cv, "_train_fold", stopped_at_fold_2)
    with pytest.raises(KeyboardInterrupt):
        cross_validate("unet4", cached, tmp_path)

    def counted(spec, samples, fold, *args):
        trained.append(fold.fold)
        return real(spec, samples, fold, *args)

    monkeypatch.setattr(cv, "_train_fold", counted)
    resumed = cross_validate("unet4", cached, tmp_path)
    assert trained == [0, 1, 2], "the second run trained only the fold the first did not finish"
    assert resumed.jaccard_per_fold == plain.jaccard_per_fold and resumed.threshold == plain.threshold
    again = _weights(folder)
    assert again.keys() == whole.keys()
    assert all(torch.equal(again[f][k], whole[f][k]) for f in whole for k in whole[f])
    client = mlflow.MlflowClient(cached.tracking.uri)
    experiment = client.get_experiment_by_name(cached.tracking.experiment).experiment_id
    every = client.search_runs([experiment], max_results=1000)
    resumed_runs = [r for r in every if "resumed_from" in r.data.tags]
    assert sorted(int(r.data.tags["fold"]) for r in resumed_runs) == [0, 1]
    assert all("best_epoch" in r.data.params and r.data.metrics for r in resumed_runs)  # their record is complete


def test_the_key_changes_with_what_a_fold_trains_on_and_not_with_what_it_does_not():
    params, samples = tiny_train_params(), noise_samples()
    spec, runtime = params.model("unet4"), {"device": "cpu", "train_precision": "fp32"}
    key = study_key(spec, params, samples, runtime)
    assert key == study_key(spec, params, noise_samples(), runtime)
    assert key == study_key(spec, tiny_train_params("cv.repeats=3", "train.workers=2"), samples, runtime)
    assert key == study_key(spec, tiny_train_params("register.margin=0.5", "tracking.experiment=x"), samples, runtime)
    named = tiny_train_params("profiles={same: {}}", "profile=same")  # a profile's name; what it sets is above
    assert named.profile == "same" and key == study_key(spec, named, samples, runtime)
    assert key != study_key(spec, tiny_train_params("train.lr=0.01"), samples, runtime)
    assert key != study_key(spec, tiny_train_params("threshold.study=0.3"), samples, runtime)  # early stopping reads it
    assert key != study_key(spec, params, samples, runtime | {"train_precision": "bf16"})
    edited = noise_samples()
    edited[1].mask[0, 0] = ~edited[1].mask[0, 0]  # one pixel of one mask redrawn
    assert key != study_key(spec, params, edited, runtime)
    assert key != study_key(spec.model_copy(update={"base_channels": 8}), params, samples, runtime)


def test_a_damaged_kept_fold_is_trained_again_not_trusted(study, monkeypatch, tmp_path):
    params, _, _ = study
    cached = params(2, f"paths.fold_cache={tmp_path}/folds")
    first = cross_validate("unet4", cached, tmp_path)
    (kept,) = (tmp_path / "folds" / "unet4").iterdir()
    (kept / "r0-f1" / "probs.npz").write_bytes(b"PK")  # a machine lost power while the fold was written
    real, trained = cv._train_fold, []

    def counted(spec, samples, fold, *args):
        trained.append(fold.fold)
        return real(spec, samples, fold, *args)

    monkeypatch.setattr(cv, "_train_fold", counted)
    again = cross_validate("unet4", cached, tmp_path)
    assert trained == [1] and again.jaccard_per_fold == first.jaccard_per_fold
    assert (kept / "r0-f1" / "probs.npz").stat().st_size > 2, "the retrained fold is kept again, whole"


def test_folds_shared_among_processes_fill_one_cache_that_the_cv_then_takes_whole(study, monkeypatch, tmp_path):
    params, folder, _ = study
    plain = cross_validate("unet4", params(3, "cv.repeats=2"), tmp_path)
    whole = _weights(folder)
    cached = params(3, "cv.repeats=2", f"paths.fold_cache={tmp_path}/folds")
    client = mlflow.MlflowClient(cached.tracking.uri)
    experiment = client.get_experiment_by_name(cached.tracking.experiment).experiment_id
    logged = len(client.search_runs([experiment], max_results=1000))
    run, _, _ = cv.plan_cv("unet4", cached)
    assert cv.cached_repeats(run) == 0
    assert len(cv.fill_fold_cache(run, [(1, 0), (1, 1), (1, 2), (0, 0)], tmp_path)) == 4  # one process's share…
    assert cv.cached_repeats(run) == 0, "repeat 1 whole but repeat 0 not: no repeat counts from the start"
    assert len(cv.fill_fold_cache(run, [(0, 1), (0, 2), (0, 0)], tmp_path)) == 2  # …the other's; cached: skipped
    assert cv.cached_repeats(run) == 2
    assert len(client.search_runs([experiment], max_results=1000)) == logged, "filling the cache logs nothing"

    def never(*_):
        raise AssertionError("every fold was in the cache")

    monkeypatch.setattr(cv, "_train_fold", never)
    shared = cross_validate("unet4", cached, tmp_path)
    assert shared.jaccard_per_fold == plain.jaccard_per_fold and shared.threshold == plain.threshold
    again = _weights(folder)
    assert again.keys() == whole.keys()
    assert all(torch.equal(again[f][k], whole[f][k]) for f in whole for k in whole[f])
