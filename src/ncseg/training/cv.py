"""All folds of one model: training, out-of-fold predictions, an honest threshold, the scores, the ensemble.

Honesty rules (nnU-Net style):
- folds are grouped by source image (ncseg.training.folds);
- checkpoints are chosen on inner-validation groups taken from the training side of each fold;
- the threshold reported for fold k is chosen on the out-of-fold predictions of the *other* folds, so no
  fold is scored at a threshold tuned on itself; the deployed ensemble's threshold uses all folds;
- the classical baseline is scored on exactly the same folds.

A model folder appears whole or not at all: the fold networks and the model card are built in a staging folder
that replaces `models/<name>` only when every fold has finished, under a lock, so an interrupted or concurrent
run can never pair old scores with new weights (or leave `fold4.pt` of an earlier 5-fold run behind).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ncseg import figures
from ncseg.config import ClassicalParams, ModelParams, NeuralParams, Params
from ncseg.data.dataset import Sample, load_samples
from ncseg.inference.runtime import pick_device
from ncseg.inference.tta import predict_tta
from ncseg.io.atomic import atomic_path, folder_lock, staged_folder
from ncseg.io.tables import write_csv
from ncseg.metrics import Scores, best_threshold, jaccard_sweep, score
from ncseg.models import classical
from ncseg.models.zoo import build_net
from ncseg.records import SCORE_KEYS, CVSummary, ModelCard, WeightFile, sha256
from ncseg.training.folds import assign_folds, inner_validation_groups
from ncseg.training.loop import EpochLog, train_net


@dataclass
class FoldResult:
    fold: int
    test: list[int]  # sample indices
    run_id: str
    scores: list[Scores] = field(default_factory=list)
    study_scores: list[Scores] = field(default_factory=list)
    threshold: float | None = None
    history: list[EpochLog] = field(default_factory=list)

    def mean(self, key: str, study: bool = False) -> float:
        return float(np.mean([getattr(s, key) for s in (self.study_scores if study else self.scores)]))


@dataclass
class CVRun:
    """One model's cross-validation in progress: what it runs on and what its folds have produced so far."""

    name: str
    spec: ModelParams
    params: Params
    samples: list[Sample]
    results: list[FoldResult] = field(default_factory=list)
    probs: dict[int, np.ndarray] = field(default_factory=dict)  # out-of-fold probabilities (networks only)
    preds: dict[int, np.ndarray] = field(default_factory=dict)  # out-of-fold masks

    @property
    def trainable(self) -> bool:
        return not isinstance(self.spec, ClassicalParams)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def fit_and_validation(
    samples: list[Sample], folds: list[int], k: int, fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], set[str]]:
    """Fold k's training side split by group into the images a network is fitted on and the inner-validation
    images its checkpoint is chosen on; fold k's test images are in neither."""
    train_idx = [i for i, f in enumerate(folds) if f != k]
    inner = inner_validation_groups([samples[i].group for i in train_idx], fraction, seed + k)
    fit = [samples[i] for i in train_idx if samples[i].group not in inner]
    val = [samples[i] for i in train_idx if samples[i].group in inner]
    return fit, val, inner


def _train_fold(
    spec: NeuralParams,
    samples: list[Sample],
    fold: FoldResult,
    folds: list[int],
    params: Params,
    progress: Progress,
) -> tuple[torch.nn.Module, list[np.ndarray]]:
    import mlflow

    from ncseg import tracking

    fit, val, inner = fit_and_validation(samples, folds, fold.fold, params.cv.inner_val_fraction, params.seed)
    torch.manual_seed(params.seed + fold.fold)
    net = build_net(spec, len(params.inference.normalization)).to(pick_device(params.train.device))

    def log_epoch(log: EpochLog) -> None:
        mlflow.log_metrics(tracking.epoch_metrics(log), step=log.epoch)

    fold.history = train_net(net, spec, fit, val, params, params.seed + fold.fold, log_epoch, progress)
    mlflow.log_params(
        {
            "fit_images": len(fit),
            "inner_val_groups": ",".join(sorted(inner)),
            "best_epoch": max(fold.history, key=lambda h: h.val_jaccard_tuned).epoch,
        }
    )
    inference = params.inference
    probs = [predict_tta([net], net.geometry, samples[i].image, inference.tta, **inference.tiling()) for i in fold.test]
    return net, probs


def _save_weights(net: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)


def nested_thresholds(
    results: list[FoldResult], probs: dict[int, np.ndarray], samples: list[Sample], grid: list[float]
) -> None:
    """Fold k's threshold from the other folds' out-of-fold predictions."""
    for r in results:
        others = [i for o in results if o is not r for i in o.test]
        r.threshold = best_threshold([probs[i] for i in others], [samples[i].mask for i in others], grid)


def cross_validate(name: str, params: Params, root: Path) -> CVSummary:
    """Run every fold of model `name`, write its artefacts and metrics, log it all to MLflow; return the summary."""
    from ncseg import tracking

    spec = params.model(name)
    samples, window = load_samples(params.paths.augmented, params.inference.normalization)
    folds = assign_folds([s.group for s in samples], params.cv.n_folds, params.seed)
    model_dir, plot_dir = params.paths.models / name, params.paths.plots / name
    run = CVRun(name, spec, params, samples)
    with (
        folder_lock(model_dir),
        staged_folder(model_dir) as weights_dir,
        staged_folder(plot_dir) as plots_out,
        tracking.parent_run(name, params, root, kind="cv", model=name) as parent_id,
    ):
        tracking.log_training_data(params.paths.augmented, root)
        _run_folds(run, folds, weights_dir)
        summary = _score(run, window)
        _write_outputs(run, summary, plots_out)
        _card(run, summary, weights_dir, parent_id).save(weights_dir / ModelCard.FILE)
        tracking.log_cv_outcome(summary, [(r.run_id, _fold_metrics(r)) for r in run.results], plots_out, weights_dir)
    summary.save(params.paths.metrics / "cv" / f"{name}.json")  # only once the model folder is in place
    return summary


def _run_folds(run: CVRun, folds: list[int], weights_dir: Path) -> None:
    import mlflow

    from ncseg import tracking

    with _progress() as progress:
        for k in progress.track(range(run.params.cv.n_folds), description=f"{run.name}: folds"):
            test = [i for i, f in enumerate(folds) if f == k]
            with tracking.child_run(f"fold-{k}", {"fold": str(k), "model": run.name}) as run_id:
                fold = FoldResult(k, test, run_id)
                mlflow.log_param("test_images", ",".join(run.samples[i].name for i in test))
                if isinstance(run.spec, ClassicalParams):
                    run.preds |= {i: _classical(run, i) for i in test}
                else:
                    net, fold_probs = _train_fold(run.spec, run.samples, fold, folds, run.params, progress)
                    run.probs |= dict(zip(test, fold_probs, strict=True))
                    _save_weights(net, weights_dir / f"fold{k}.pt")
                    mlflow.log_artifact(str(weights_dir / f"fold{k}.pt"), "weights")
            run.results.append(fold)


def _classical(run: CVRun, i: int) -> np.ndarray:
    return classical.segment(run.samples[i].raw, run.samples[i].pixel_size_nm, run.spec)


def _score(run: CVRun, window: tuple[float, float] | None) -> CVSummary:
    """Score every fold's test images; networks at the nested threshold (and the study's), the baseline as is."""
    final = _score_networks(run) if run.trainable else None
    if not run.trainable:
        for r in run.results:
            r.scores = [score(run.preds[i], run.samples[i].mask) for i in r.test]
    values: dict = {}
    for key in SCORE_KEYS:
        per_fold = [r.mean(key) for r in run.results]
        values[f"{key}_mean"], values[f"{key}_std"] = float(np.mean(per_fold)), float(np.std(per_fold, ddof=1))
    if run.trainable:
        study = [r.mean("jaccard", study=True) for r in run.results]
        values["jaccard_at_study_threshold_mean"] = float(np.mean(study))
        values["jaccard_at_study_threshold_std"] = float(np.std(study, ddof=1))
    return CVSummary(
        model=run.name,
        kind=run.spec.kind,
        n_folds=len(run.results),
        n_images=len(run.samples),
        threshold=final,
        study_threshold=run.params.threshold.study if run.trainable else None,
        fold_thresholds=tuple(r.threshold for r in run.results) if run.trainable else None,
        jaccard_per_fold=tuple(r.mean("jaccard") for r in run.results),
        intensity_window=window,
        **values,
    )


def _score_networks(run: CVRun) -> float:
    """Fold scores at nested thresholds; returns the threshold chosen on all out-of-fold predictions."""
    samples, probs, grid = run.samples, run.probs, run.params.threshold.grid()
    nested_thresholds(run.results, probs, samples, grid)
    for r in run.results:
        r.scores = [score(probs[i] > r.threshold, samples[i].mask) for i in r.test]
        r.study_scores = [score(probs[i] > run.params.threshold.study, samples[i].mask) for i in r.test]
        run.preds |= {i: probs[i] > r.threshold for i in r.test}
    return best_threshold([probs[i] for i in range(len(samples))], [s.mask for s in samples], grid)


def _fold_metrics(r: FoldResult) -> dict[str, float]:
    """A fold's test scores as its child run records them."""
    metrics = {key: r.mean(key) for key in SCORE_KEYS}
    if r.threshold is not None:
        metrics |= {"threshold": r.threshold, "jaccard_at_study_threshold": r.mean("jaccard", study=True)}
    return metrics


def _card(run: CVRun, summary: CVSummary, weights_dir: Path, run_id: str) -> ModelCard:
    files = [f"fold{r.fold}.pt" for r in run.results] if run.trainable else []
    return ModelCard(
        name=run.name,
        spec=run.spec,
        threshold=summary.threshold,
        folds=tuple(WeightFile(file=f, sha256=sha256(weights_dir / f)) for f in files),
        cv_jaccard_mean=summary.jaccard_mean,
        cv_jaccard_std=summary.jaccard_std,
        normalization=run.params.inference.normalization,
        intensity_window=summary.intensity_window,
        tta=run.params.inference.tta,
        cv_run_id=run_id,
    )


def _write_outputs(run: CVRun, summary: CVSummary, plot_dir: Path) -> None:
    write_csv(
        plot_dir / "folds.csv",
        [
            {"fold": r.fold, "threshold": r.threshold, "images": len(r.test), **{k: r.mean(k) for k in SCORE_KEYS}}
            for r in run.results
        ],
    )
    for r in run.results:
        for i, scores in zip(r.test, r.scores, strict=True):
            s = run.samples[i]
            title = f"{s.name} · fold {r.fold} (test) · Jaccard {scores.jaccard:.3f}"
            figures.comparison(plot_dir / "overlays" / f"{s.name}.png", s.image[0], s.mask, run.preds[i], title)
    if run.trainable:
        _write_curves(run, summary.threshold, plot_dir)


def _write_curves(run: CVRun, threshold: float, plot_dir: Path) -> None:
    """The threshold sweep over all out-of-fold predictions and the per-fold learning curves."""
    grid, results = run.params.threshold.grid(), run.results
    curve = jaccard_sweep([run.probs[i] for i in range(len(run.samples))], [s.mask for s in run.samples], grid)
    write_csv(
        plot_dir / "threshold_sweep.csv",
        [{"threshold": t, "jaccard": float(j)} for t, j in zip(grid, curve, strict=True)],
    )
    figures.threshold_curve(plot_dir / "threshold_sweep.png", grid, curve, threshold, run.params.threshold.study)
    write_csv(plot_dir / "learning_curve.csv", [{"fold": r.fold, **asdict(h)} for r in results for h in r.history])
    for r in results:  # one file per fold: folds stop early at different epochs, and a missing epoch is no 0
        rows = [{"epoch": h.epoch, "val_jaccard_tuned": h.val_jaccard_tuned} for h in r.history]
        write_csv(plot_dir / "val_jaccard" / f"fold-{r.fold}.csv", rows)
    figures.learning_curves(plot_dir / "learning_curves.png", {f"fold {r.fold}": r.history for r in results})
