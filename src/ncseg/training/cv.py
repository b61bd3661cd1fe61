"""All folds of one model: training, out-of-fold predictions, an honest threshold, the scores, the ensemble.

Honesty rules (nnU-Net style):
- folds are grouped by source image (ncseg.training.folds);
- checkpoints are chosen on inner-validation groups taken from the training side of each fold;
- the threshold reported for fold k is chosen on the out-of-fold predictions of the *other* folds, so no
  fold is scored at a threshold tuned on itself; the deployed ensemble's threshold uses all folds;
- the classical baseline is scored on exactly the same folds.
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
from ncseg.inference import pick_device, predict_proba
from ncseg.io.atomic import atomic_path
from ncseg.io.tables import write_csv, write_json
from ncseg.metrics import Scores, best_threshold, jaccard_sweep, score
from ncseg.models import classical
from ncseg.models.zoo import build_net
from ncseg.training.folds import assign_folds, inner_validation_groups
from ncseg.training.loop import EpochLog, train_net

MODEL_CARD = "model.json"


@dataclass
class FoldResult:
    fold: int
    test: list[int]  # sample indices
    run_id: str
    scores: list[Scores] = field(default_factory=list)
    study_scores: list[Scores] = field(default_factory=list)
    threshold: float | None = None
    history: list[EpochLog] = field(default_factory=list)


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


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _train_fold(
    spec: NeuralParams,
    samples: list[Sample],
    fold: FoldResult,
    folds: list[int],
    params: Params,
    progress: Progress,
) -> tuple[torch.nn.Module, list[np.ndarray]]:
    import mlflow

    train_idx = [i for i, f in enumerate(folds) if f != fold.fold]
    inner = inner_validation_groups(
        [samples[i].group for i in train_idx], params.cv.inner_val_fraction, params.seed + fold.fold
    )
    fit = [samples[i] for i in train_idx if samples[i].group not in inner]
    val = [samples[i] for i in train_idx if samples[i].group in inner]
    torch.manual_seed(params.seed + fold.fold)
    net = build_net(spec, len(params.inference.normalization)).to(pick_device(params.train.device))

    def log_epoch(log: EpochLog) -> None:
        mlflow.log_metrics({k: v for k, v in asdict(log).items() if k != "epoch"}, step=log.epoch)

    fold.history = train_net(net, spec, fit, val, params, params.seed + fold.fold, log_epoch, progress)
    mlflow.log_params(
        {
            "fit_images": len(fit),
            "inner_val_groups": ",".join(sorted(inner)),
            "best_epoch": max(fold.history, key=lambda h: h.val_jaccard_best).epoch,
        }
    )
    probs = [predict_proba([net], net.geometry, samples[i].image, **params.inference.tiling()) for i in fold.test]
    return net, probs


def _save_weights(net: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)


def _nested_thresholds(
    results: list[FoldResult], probs: dict[int, np.ndarray], samples: list[Sample], grid: list[float]
) -> None:
    """Fold k's threshold from the other folds' out-of-fold predictions."""
    for r in results:
        others = [i for o in results if o is not r for i in o.test]
        r.threshold = best_threshold([probs[i] for i in others], [samples[i].mask for i in others], grid)


def cross_validate(name: str, params: Params, root: Path) -> dict:
    """Run every fold of model `name`, write its artefacts and metrics, log it all to MLflow; return the summary."""
    import mlflow

    from ncseg import tracking

    spec = params.model(name)
    samples, window = load_samples(params.paths.augmented, params.inference.normalization)
    folds = assign_folds([s.group for s in samples], params.cv.n_folds, params.seed)
    model_dir, plot_dir = params.paths.models / name, params.paths.plots / name
    run = CVRun(name, spec, params, samples)
    with tracking.parent_run(name, params, root, kind="cv") as parent_id, _progress() as progress:
        for k in progress.track(range(params.cv.n_folds), description=f"{name}: folds"):
            test = [i for i, f in enumerate(folds) if f == k]
            with tracking.child_run(f"fold-{k}", {"fold": str(k), "model": name}) as run_id:
                fold = FoldResult(k, test, run_id)
                mlflow.log_param("test_images", ",".join(samples[i].name for i in test))
                if isinstance(spec, ClassicalParams):
                    run.preds |= {i: classical.segment(samples[i].raw, samples[i].pixel_size_nm, spec) for i in test}
                else:
                    net, fold_probs = _train_fold(spec, samples, fold, folds, params, progress)
                    run.probs |= dict(zip(test, fold_probs, strict=True))
                    _save_weights(net, model_dir / f"fold{k}.pt")
                    mlflow.log_artifact(str(model_dir / f"fold{k}.pt"), "weights")
            run.results.append(fold)
        summary = _score(run)
        summary["intensity_window"] = list(window) if window else None
        _write_outputs(run, summary, model_dir, plot_dir)
        _log_outcome(summary, run.results, plot_dir)
        mlflow.log_artifact(str(model_dir / MODEL_CARD), "weights")
        summary["run_id"] = parent_id
    return summary


def _score(run: CVRun) -> dict:
    """Score every fold's test images; networks at the nested threshold (and the study's), the baseline as is."""
    final = _score_networks(run) if run.probs else None
    if not run.probs:
        for r in run.results:
            r.scores = [score(run.preds[i], run.samples[i].mask) for i in r.test]
    summary: dict = {
        "model": run.name,
        "kind": run.spec.kind,
        "n_folds": len(run.results),
        "n_images": len(run.samples),
        "threshold": final,
        "study_threshold": run.params.threshold.study if run.probs else None,
        "fold_thresholds": [r.threshold for r in run.results] if run.probs else None,
    }
    for key in Scores.__dataclass_fields__:
        per_fold = [float(np.mean([getattr(s, key) for s in r.scores])) for r in run.results]
        summary[f"{key}_mean"], summary[f"{key}_std"] = float(np.mean(per_fold)), float(np.std(per_fold, ddof=1))
        if key == "jaccard":
            summary["jaccard_per_fold"] = per_fold  # for paired comparisons on the same folds
    if run.probs:
        study = [float(np.mean([s.jaccard for s in r.study_scores])) for r in run.results]
        summary["jaccard_at_study_threshold_mean"] = float(np.mean(study))
        summary["jaccard_at_study_threshold_std"] = float(np.std(study, ddof=1))
    return summary


def _score_networks(run: CVRun) -> float:
    """Fold scores at nested thresholds; returns the threshold chosen on all out-of-fold predictions."""
    samples, probs, grid = run.samples, run.probs, run.params.threshold.grid()
    _nested_thresholds(run.results, probs, samples, grid)
    for r in run.results:
        r.scores = [score(probs[i] > r.threshold, samples[i].mask) for i in r.test]
        r.study_scores = [score(probs[i] > run.params.threshold.study, samples[i].mask) for i in r.test]
        run.preds |= {i: probs[i] > r.threshold for i in r.test}
    return best_threshold([probs[i] for i in range(len(samples))], [s.mask for s in samples], grid)


def _write_outputs(run: CVRun, summary: dict, model_dir: Path, plot_dir: Path) -> None:
    params = run.params
    write_json(params.paths.metrics / "cv" / f"{run.name}.json", {k: v for k, v in summary.items() if k != "run_id"})
    card = {
        "name": run.name,
        "spec": run.spec.model_dump(),
        "threshold": summary["threshold"],
        "folds": [f"fold{r.fold}.pt" for r in run.results] if run.probs else [],
        "cv_jaccard_mean": summary["jaccard_mean"],
        "cv_jaccard_std": summary["jaccard_std"],
        "normalization": list(params.inference.normalization),  # the input channels, in order
        "intensity_window": summary["intensity_window"],  # None unless a 'dataset' view is used
    }
    write_json(model_dir / MODEL_CARD, card)
    write_csv(
        plot_dir / "folds.csv",
        [
            {
                "fold": r.fold,
                "threshold": r.threshold,
                "images": len(r.test),
                **{k: float(np.mean([getattr(s, k) for s in r.scores])) for k in Scores.__dataclass_fields__},
            }
            for r in run.results
        ],
    )
    for i, s in enumerate(run.samples):
        overlay = figures.comparison(s.image[0], s.mask, run.preds[i])
        figures.save_png(plot_dir / "overlays" / f"{s.name}.png", overlay)
    if run.probs:
        _write_curves(run, summary["threshold"], plot_dir)


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
    by_epoch = [{"epoch": e} for e in range(max(len(r.history) for r in results))]
    for r in results:  # one column per fold (early stopping ends folds at different epochs)
        for row in by_epoch:
            row[f"fold-{r.fold}"] = r.history[row["epoch"]].val_jaccard_best if row["epoch"] < len(r.history) else ""
    write_csv(plot_dir / "val_jaccard.csv", by_epoch)


def _log_outcome(summary: dict, results: list[FoldResult], plot_dir: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for r in results:
        for key in Scores.__dataclass_fields__:
            client.log_metric(r.run_id, key, float(np.mean([getattr(s, key) for s in r.scores])))
        if r.threshold is not None:
            client.log_metric(r.run_id, "threshold", r.threshold)
            client.log_metric(
                r.run_id, "jaccard_at_study_threshold", float(np.mean([s.jaccard for s in r.study_scores]))
            )
    numbers = {f"cv_{k}": v for k, v in summary.items() if isinstance(v, float)}
    mlflow.log_metrics(numbers)
    mlflow.log_artifacts(str(plot_dir), "plots")  # overlays/, threshold sweep, learning curves, folds.csv
