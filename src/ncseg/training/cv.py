"""All folds of one model, `cv.repeats` times: training, out-of-fold predictions, calibration, an honest
threshold, the scores, the ensemble. This module only orchestrates: the splits are planned in
ncseg.training.plan, the networks fitted in .loop, scored in .scoring and written out in .outputs.

Honesty rules (nnU-Net style):
- folds are grouped by source image, groups that near-duplicate images link joined first (ncseg.training.plan);
- checkpoints are chosen on inner-validation groups taken from the training side of each fold;
- the temperature and threshold reported for fold k are fitted on the out-of-fold predictions of the *other*
  folds, so no fold is scored at a setting tuned on itself; the deployed ones use all folds (.scoring);
- the classical baseline is scored on exactly the same folds.

Repeats are independent grouped K-fold runs, each with its own seed (split, inner validation, initialisation,
crops). They measure how much the CV mean moves from run to run, and give every image R networks that never
saw it, one per repeat: their mean is the R-network ensemble, scored on repeat 0's folds like any model.

On a large GPU one network of batch 2 uses a fraction of the device: `fill_fold_cache` trains a share of the
folds into the fold cache (nothing logged), several processes at once, and `cross_validate` then takes every fold
from there (benchmarks/device_cv.py).

A model folder appears whole or not at all: the fold networks and the model card are built in a staging folder
that replaces `models/<name>` only when every fold has finished, under a lock, so an interrupted or concurrent
run can never pair old scores with new weights (or leave `fold4.pt` of an earlier 5-fold run behind).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ncseg.config import ClassicalParams, NeuralParams, Params
from ncseg.data.dataset import Sample, load_samples
from ncseg.data.leaks import LeakFreeGroups
from ncseg.inference.runtime import effective_precision, pick_device
from ncseg.inference.tta import predict_tta
from ncseg.io.atomic import folder_lock, staged_folder
from ncseg.labels import LabelSet
from ncseg.metrics import EpochLog
from ncseg.models import classical
from ncseg.records import CVSummary, ModelCard
from ncseg.training.loop import class_targets, fit_new_net
from ncseg.training.outputs import model_card, save_weights, weight_file, write_plots
from ncseg.training.plan import Split, child_name, fit_and_validation, leak_free, plan_repeats
from ncseg.training.resume import Fold, FoldParams, FoldStore
from ncseg.training.scoring import CVRun, FoldResult, Repeat, fold_metrics, score_cv


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _train_fold(
    spec: NeuralParams,
    samples: list[Sample],
    fold: FoldResult,
    split: Split,
    params: Params,
    progress: Progress | None,
    on_epoch: Callable[[EpochLog], None],
) -> tuple[torch.nn.Module, list[np.ndarray], FoldParams]:
    fit, val, inner = fit_and_validation(samples, split.folds, fold.fold, params.cv.inner_val_fraction, split.seed)
    net, fold.history = fit_new_net(spec, fit, val, params, split.seed + fold.fold, on_epoch, progress)
    fold_params: FoldParams = {
        "fit_images": len(fit),
        "inner_val_groups": ",".join(sorted(inner)),
        "best_epoch": max(fold.history, key=lambda h: h.val_jaccard_tuned).epoch,
        "seed": split.seed + fold.fold,
    }
    inference = params.inference
    probs = [predict_tta([net], net.geometry, samples[i].image, inference.tta, **inference.tiling()) for i in fold.test]
    return net, probs, fold_params


def cross_validate(name: str, params: Params, root: Path) -> CVSummary:
    """Run every fold of every repeat of model `name`, write its artefacts and metrics, log it all to MLflow;
    return the summary."""
    from ncseg.tracking import runs

    run, window, groups = plan_cv(name, params)
    model_dir, plot_dir = params.paths.models / name, params.paths.plots / name
    with (
        folder_lock(model_dir),
        staged_folder(model_dir) as weights_dir,
        staged_folder(plot_dir) as plots_out,
        runs.parent_run(name, params, root, kind="cv", model=name) as parent_id,
    ):
        runs.log_training_data(params.paths.augmented, root)
        runs.log_runtime(_runtime(params))
        runs.log_split_groups(groups, [s.name for s in run.samples])
        _run_folds(run, weights_dir)
        summary, deployed = score_cv(run, window)
        joins = {"leak_threshold": groups.threshold, "groups": len(set(groups.groups)), "joined_groups": groups.joined}
        summary = summary.model_copy(update=joins)
        write_plots(run, summary, plots_out)
        model_card(run, summary, deployed, weights_dir, parent_id).save(weights_dir / ModelCard.FILE)
        folds = [(r.run_id, fold_metrics(r, params.labels)) for r in run.results if r.run_id is not None]
        runs.log_cv_outcome(summary, folds, plots_out, weights_dir)
    summary.save(params.paths.metrics / "cv" / f"{name}.json")  # only once the model folder is in place
    return summary


def plan_cv(name: str, params: Params) -> tuple[CVRun, tuple[float, float] | None, LeakFreeGroups]:
    """Model `name`'s CV before anything runs: its samples, every repeat's split, the dataset window, the groups."""
    spec = params.model(name)  # an unknown name fails before the data is read
    samples, window = load_samples(params.paths.augmented, params.inference)
    samples, groups = leak_free(samples, params.cv.leak_threshold)  # inner validation splits these groups too
    if not params.labels.is_binary:
        class_targets(samples, params.labels, params.paths.augmented)  # every map, before any run or folder opens
    repeats = [Repeat(split) for split in plan_repeats(samples, params, groups)]
    return CVRun(name, spec, params, samples, repeats), window, groups


def fill_fold_cache(run: CVRun, folds: list[tuple[int, int]], scratch: Path) -> list[int]:
    """Train these (repeat, fold) pairs of a neural CV into its fold cache, nothing logged or scored; returns each
    trained fold's seconds (folds already cached are skipped). Several processes on one large GPU, each with its
    share of the folds, fill one cache at once (a batch of two 512 px crops uses a fraction of such a GPU);
    `cross_validate` then takes every fold from it. The shares must not overlap: a fold is written by one process."""
    store = _fold_store(run)
    if store is None:
        raise ValueError(f"{run.name}: no fold cache to fill (paths.fold_cache is off, or the model is classical)")
    seconds: list[int] = []
    for index, k in folds:
        split = run.repeats[index].split
        test = split.test(k)
        if store.get(index, k, len(test)) is None:
            start = time.perf_counter()
            fold = FoldResult(k, test, None, index)
            _trained(run, fold, split, scratch / weight_file(index, k), store, None, _quiet)
            seconds.append(round(time.perf_counter() - start))
    return seconds


def cached_repeats(run: CVRun) -> int:
    """How many of the CV's first repeats have every fold in its fold cache (0 where it has none)."""
    store = _fold_store(run)
    if store is None:
        return 0
    for rep in run.repeats:
        split = rep.split
        if any(store.get(split.index, k, len(split.test(k))) is None for k in range(run.params.cv.n_folds)):
            return split.index
    return len(run.repeats)


def _quiet(_: EpochLog) -> None:
    """Epochs of a fold trained into the cache: `cross_validate` logs them when it takes the fold."""


def _runtime(params: Params) -> dict[str, str]:
    device = pick_device(params.train.device)
    return {
        "device": device.type,
        "train_precision": effective_precision(params.train.precision, device),
        "inference_precision": effective_precision(params.inference.precision, device),
    }


def _run_folds(run: CVRun, weights_dir: Path) -> None:
    from ncseg.tracking import runs

    plan = [(rep, k) for rep in run.repeats for k in range(run.params.cv.n_folds)]
    store = _fold_store(run)
    with _progress() as progress:
        for rep, k in progress.track(plan, description=f"{run.name}: folds"):
            split, test = rep.split, rep.split.test(k)
            cached = store.get(split.index, k, len(test)) if store else None
            tags = {"fold": str(k), "repeat": str(split.index), "model": run.name}
            tags |= {"resumed_from": str(store.folder)} if store and cached else {}
            with runs.child_run(child_name(split.index, k, len(run.repeats)), tags) as run_id:
                fold = FoldResult(k, test, run_id, split.index)
                runs.log_fold_params({"test_images": ",".join(run.samples[i].name for i in test)})
                if isinstance(run.spec, ClassicalParams):
                    rep.preds |= classical_predictions(run.samples, test, run.spec, run.params.labels)
                else:
                    path = weights_dir / weight_file(split.index, k)
                    if cached:
                        probs = _resumed(cached, fold, path)
                    else:
                        probs, fold_params = _trained(run, fold, split, path, store, progress, runs.log_epoch)
                        runs.log_fold_params(fold_params)
                    rep.probs |= dict(zip(test, probs, strict=True))
                    runs.log_weights(path)
            rep.results.append(fold)


def _trained(
    run: CVRun,
    fold: FoldResult,
    split: Split,
    path: Path,
    store: FoldStore | None,
    progress: Progress | None,
    on_epoch: Callable[[EpochLog], None],
) -> tuple[list[np.ndarray], FoldParams]:
    """A fold trained here: its network saved to `path` (and kept in the store), its test images' probabilities
    and its parameters."""
    net, probs, fold_params = _train_fold(run.spec, run.samples, fold, split, run.params, progress, on_epoch)
    save_weights(net, path)
    if store:
        store.put(split.index, fold.fold, path, (probs, fold.history, fold_params))
    return probs, fold_params


def _fold_store(run: CVRun) -> FoldStore | None:
    """Where this CV's finished folds are kept (`paths.fold_cache`; None: nowhere, every fold trains)."""
    if isinstance(run.spec, ClassicalParams):  # seconds per fold: nothing worth keeping
        return None
    params = run.params
    return FoldStore.open(params.paths.fold_cache, run.name, run.spec, params, run.samples, _runtime(params))


def _resumed(cached: Fold, fold: FoldResult, path: Path) -> list[np.ndarray]:
    """A fold a stopped run finished, taken as it was: its network, its curves and parameters logged again on this
    run's fold run, so the MLflow record of the resumed CV is complete."""
    from ncseg.tracking import runs

    shutil.copyfile(cached.weights, path)
    fold.history = cached.history
    for log in cached.history:
        runs.log_epoch(log)
    runs.log_fold_params(cached.params)
    return cached.probs


def classical_predictions(
    samples: list[Sample], test: list[int], spec: ClassicalParams, labels: LabelSet
) -> dict[int, np.ndarray]:
    """A binary study's baseline thresholds each test image on its own (Otsu); a K-class study's fits one
    intensity interval per class on the fold's training side, the images its networks learn from."""
    if labels.is_binary:
        return {i: classical.segment(samples[i].raw, samples[i].pixel_size_nm, spec) for i in test}
    tested = set(test)
    train = [s for j, s in enumerate(samples) if j not in tested]
    levels = classical.fit_levels(
        [s.raw for s in train], [s.classes for s in train], [s.pixel_size_nm for s in train], spec, len(labels.classes)
    )
    return {i: classical.segment_levels(samples[i].raw, samples[i].pixel_size_nm, spec, levels) for i in test}
