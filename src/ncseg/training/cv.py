"""All folds of one model, `cv.repeats` times: training, out-of-fold predictions, calibration, an honest
threshold, the scores, the ensemble.

Honesty rules (nnU-Net style):
- folds are grouped by source image (ncseg.training.folds);
- checkpoints are chosen on inner-validation groups taken from the training side of each fold;
- the temperature and threshold reported for fold k are fitted on the out-of-fold predictions of the *other*
  folds, so no fold is scored at a setting tuned on itself; the deployed ones use all folds;
- the classical baseline is scored on exactly the same folds.

Repeats are independent grouped K-fold runs, each with its own seed (split, inner validation, initialisation,
crops). They measure how much the CV mean moves from run to run, and give every image R networks that never
saw it, one per repeat: their mean is the R-network ensemble, scored on repeat 0's folds like any model.

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

from ncseg import calibration, figures
from ncseg.config import ClassicalParams, ModelParams, NeuralParams, Params
from ncseg.data.dataset import Sample, load_samples
from ncseg.inference.tta import predict_tta
from ncseg.io.atomic import atomic_path, folder_lock, staged_folder
from ncseg.io.tables import write_csv
from ncseg.metrics import Scores, best_threshold, jaccard_sweep, score
from ncseg.models import classical
from ncseg.ood import training_domain
from ncseg.records import SCORE_KEYS, CVSummary, ModelCard, Operating, WeightFile, sha256
from ncseg.training.folds import assign_folds, inner_validation_groups
from ncseg.training.loop import EpochLog, fit_new_net


@dataclass
class FoldResult:
    fold: int
    test: list[int]  # sample indices
    run_id: str | None  # its MLflow child run (None for the ensemble's folds, which train nothing)
    repeat: int = 0
    scores: list[Scores] = field(default_factory=list)
    study_scores: list[Scores] = field(default_factory=list)
    threshold: float | None = None  # on the calibrated scale
    temperature: float = 1.0
    ece: tuple[float, float] | None = None  # this fold's test pixels: before, after calibration
    history: list[EpochLog] = field(default_factory=list)

    def mean(self, key: str, study: bool = False) -> float:
        return float(np.mean([getattr(s, key) for s in (self.study_scores if study else self.scores)]))


@dataclass
class Repeat:
    """One grouped K-fold run with its own seed: split, inner validation, initialisation and crops."""

    index: int
    seed: int
    folds: list[int]  # fold per sample
    results: list[FoldResult] = field(default_factory=list)
    probs: dict[int, np.ndarray] = field(default_factory=dict)  # out-of-fold probabilities (networks only)
    preds: dict[int, np.ndarray] = field(default_factory=dict)  # out-of-fold masks


@dataclass
class CVRun:
    """One model's cross-validation in progress: what it runs on and what its repeats have produced so far."""

    name: str
    spec: ModelParams
    params: Params
    samples: list[Sample]
    repeats: list[Repeat]

    @property
    def trainable(self) -> bool:
        return not isinstance(self.spec, ClassicalParams)

    @property
    def results(self) -> list[FoldResult]:
        return [r for rep in self.repeats for r in rep.results]


def plan_repeats(samples: list[Sample], params: Params) -> list[Repeat]:
    """The R grouped splits: repeat r uses `cv.seed(seed, r)` for everything random in it."""
    groups = [s.group for s in samples]
    seeds = [params.cv.seed(params.seed, r) for r in range(params.cv.repeats)]
    return [Repeat(r, seed, assign_folds(groups, params.cv.n_folds, seed)) for r, seed in enumerate(seeds)]


def weight_file(repeat: int, fold: int) -> str:
    return f"fold{fold}.pt" if repeat == 0 else f"repeat{repeat}-fold{fold}.pt"


def child_name(repeat: int, fold: int, repeats: int) -> str:
    return f"fold-{fold}" if repeats == 1 else f"repeat-{repeat}-fold-{fold}"


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
    rep: Repeat,
    params: Params,
    progress: Progress,
) -> tuple[torch.nn.Module, list[np.ndarray]]:
    import mlflow

    from ncseg import tracking

    fit, val, inner = fit_and_validation(samples, rep.folds, fold.fold, params.cv.inner_val_fraction, rep.seed)

    def log_epoch(log: EpochLog) -> None:
        mlflow.log_metrics(tracking.epoch_metrics(log), step=log.epoch)

    net, fold.history = fit_new_net(spec, fit, val, params, rep.seed + fold.fold, log_epoch, progress)
    mlflow.log_params(
        {
            "fit_images": len(fit),
            "inner_val_groups": ",".join(sorted(inner)),
            "best_epoch": max(fold.history, key=lambda h: h.val_jaccard_tuned).epoch,
            "seed": rep.seed + fold.fold,
        }
    )
    inference = params.inference
    probs = [predict_tta([net], net.geometry, samples[i].image, inference.tta, **inference.tiling()) for i in fold.test]
    return net, probs


def _save_weights(net: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)


def _temperature(probs: list[np.ndarray], masks: list[np.ndarray], params: Params) -> float:
    c = params.calibration
    if c.method == "none":
        return 1.0
    return calibration.fit_temperature(probs, masks, max_pixels=c.fit_pixels, seed=params.seed)


def nested_thresholds(
    results: list[FoldResult], probs: dict[int, np.ndarray], samples: list[Sample], params: Params
) -> None:
    """Fold k's temperature, then its threshold on the calibrated scale, from the other folds' out-of-fold
    predictions only; its calibration error is measured on its own test images before and after."""
    grid, bins = params.threshold.grid(), params.calibration.bins
    for r in results:
        others = [i for o in results if o is not r for i in o.test]
        other_probs, other_masks = [probs[i] for i in others], [samples[i].mask for i in others]
        r.temperature = _temperature(other_probs, other_masks, params)
        calibrated = [calibration.apply(p, r.temperature) for p in other_probs]
        r.threshold = best_threshold(calibrated, other_masks, grid)
        test_probs, test_masks = [probs[i] for i in r.test], [samples[i].mask for i in r.test]
        tested = [calibration.apply(p, r.temperature) for p in test_probs]
        r.ece = (calibration.ece(test_probs, test_masks, bins), calibration.ece(tested, test_masks, bins))


def cross_validate(name: str, params: Params, root: Path) -> CVSummary:
    """Run every fold of every repeat of model `name`, write its artefacts and metrics, log it all to MLflow;
    return the summary."""
    from ncseg import tracking

    spec = params.model(name)
    samples, window = load_samples(params.paths.augmented, params.inference.normalization)
    model_dir, plot_dir = params.paths.models / name, params.paths.plots / name
    run = CVRun(name, spec, params, samples, plan_repeats(samples, params))
    with (
        folder_lock(model_dir),
        staged_folder(model_dir) as weights_dir,
        staged_folder(plot_dir) as plots_out,
        tracking.parent_run(name, params, root, kind="cv", model=name) as parent_id,
    ):
        tracking.log_training_data(params.paths.augmented, root)
        _run_folds(run, weights_dir)
        summary, operating = _score(run, window)
        _write_outputs(run, summary, plots_out)
        _card(run, summary, operating, weights_dir, parent_id).save(weights_dir / ModelCard.FILE)
        folds = [(r.run_id, _fold_metrics(r)) for r in run.results if r.run_id is not None]
        tracking.log_cv_outcome(summary, folds, plots_out, weights_dir)
    summary.save(params.paths.metrics / "cv" / f"{name}.json")  # only once the model folder is in place
    return summary


def _run_folds(run: CVRun, weights_dir: Path) -> None:
    import mlflow

    from ncseg import tracking

    plan = [(rep, k) for rep in run.repeats for k in range(run.params.cv.n_folds)]
    with _progress() as progress:
        for rep, k in progress.track(plan, description=f"{run.name}: folds"):
            test = [i for i, f in enumerate(rep.folds) if f == k]
            tags = {"fold": str(k), "repeat": str(rep.index), "model": run.name}
            with tracking.child_run(child_name(rep.index, k, len(run.repeats)), tags) as run_id:
                fold = FoldResult(k, test, run_id, rep.index)
                mlflow.log_param("test_images", ",".join(run.samples[i].name for i in test))
                if isinstance(run.spec, ClassicalParams):
                    rep.preds |= {i: _classical(run, i) for i in test}
                else:
                    net, fold_probs = _train_fold(run.spec, run.samples, fold, rep, run.params, progress)
                    rep.probs |= dict(zip(test, fold_probs, strict=True))
                    path = weights_dir / weight_file(rep.index, k)
                    _save_weights(net, path)
                    mlflow.log_artifact(str(path), "weights")
            rep.results.append(fold)


def _classical(run: CVRun, i: int) -> np.ndarray:
    return classical.segment(run.samples[i].raw, run.samples[i].pixel_size_nm, run.spec)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _score(run: CVRun, window: tuple[float, float] | None) -> tuple[CVSummary, Operating | None]:
    """Score every fold's test images of every repeat (networks at their nested threshold, and at the study's;
    the baseline as is), then the R-network ensemble; returns the summary and the deployed operating point."""
    operating = _score_networks(run) if run.trainable else None
    if not run.trainable:
        for r in run.results:
            r.scores = [score(run.repeats[r.repeat].preds[i], run.samples[i].mask) for i in r.test]
    values: dict = {}
    for key in SCORE_KEYS:
        values[f"{key}_mean"], values[f"{key}_std"] = _mean_std([r.mean(key) for r in run.results])
    repeat_means = [float(np.mean([r.mean("jaccard") for r in rep.results])) for rep in run.repeats]
    if run.trainable:
        values |= dict(
            zip(
                ("jaccard_at_study_threshold_mean", "jaccard_at_study_threshold_std"),
                _mean_std([r.mean("jaccard", study=True) for r in run.results]),
                strict=True,
            )
        )
        values["temperature"] = operating.temperature
        values["ece_raw_mean"] = float(np.mean([r.ece[0] for r in run.results]))
        values["ece_calibrated_mean"] = float(np.mean([r.ece[1] for r in run.results]))
    ensemble = _score_ensemble(run) if run.trainable and len(run.repeats) > 1 else None
    if ensemble is not None:
        per_fold = [r.mean("jaccard") for r in ensemble[0]]
        values["ensemble_jaccard_mean"], values["ensemble_jaccard_std"] = _mean_std(per_fold)
        values["ensemble_jaccard_per_fold"] = tuple(per_fold)
    summary = CVSummary(
        model=run.name,
        kind=run.spec.kind,
        n_folds=run.params.cv.n_folds,
        n_images=len(run.samples),
        repeats=len(run.repeats),
        threshold=operating.threshold if operating else None,
        study_threshold=run.params.threshold.study if run.trainable else None,
        fold_thresholds=tuple(r.threshold for r in run.results) if run.trainable else None,
        jaccard_per_fold=tuple(r.mean("jaccard") for r in run.results),
        jaccard_repeat_means=tuple(repeat_means),
        jaccard_between_repeat_std=_mean_std(repeat_means)[1] if len(repeat_means) > 1 else None,
        intensity_window=window,
        **values,
    )
    return summary, Deployed(operating, ensemble[1] if ensemble else None) if operating else None


@dataclass(frozen=True)
class Deployed:
    """The operating points the model card records: one network's, and the R-network ensemble's."""

    single: Operating
    ensemble: Operating | None


def _operating_point(probs: list[np.ndarray], masks: list[np.ndarray], params: Params) -> Operating:
    """Temperature on all out-of-fold predictions, then the threshold on the calibrated ones."""
    temperature = _temperature(probs, masks, params)
    calibrated = [calibration.apply(p, temperature) for p in probs]
    return Operating(threshold=best_threshold(calibrated, masks, params.threshold.grid()), temperature=temperature)


def _score_folds(results: list[FoldResult], probs: dict[int, np.ndarray], run: CVRun) -> None:
    samples, study = run.samples, run.params.threshold.study
    nested_thresholds(results, probs, samples, run.params)
    for r in results:
        masks = {i: calibration.apply(probs[i], r.temperature) > r.threshold for i in r.test}
        r.scores = [score(masks[i], samples[i].mask) for i in r.test]
        r.study_scores = [score(probs[i] > study, samples[i].mask) for i in r.test]  # the study's raw cut
        run.repeats[r.repeat].preds |= masks


def _score_networks(run: CVRun) -> Operating:
    """Every repeat's fold scores at nested thresholds; returns the operating point chosen on all out-of-fold
    predictions of all repeats."""
    for rep in run.repeats:
        _score_folds(rep.results, rep.probs, run)
    probs = [rep.probs[i] for rep in run.repeats for i in range(len(run.samples))]
    return _operating_point(probs, [s.mask for _ in run.repeats for s in run.samples], run.params)


def _score_ensemble(run: CVRun) -> tuple[list[FoldResult], Operating]:
    """The mean probability of the R networks that never saw an image (one per repeat), scored on repeat 0's
    folds with the same nested calibration and threshold: the ensemble's gain measured, not assumed."""
    n = len(run.samples)
    probs = {i: np.mean([rep.probs[i] for rep in run.repeats], axis=0) for i in range(n)}
    results = [FoldResult(r.fold, r.test, None) for r in run.repeats[0].results]
    nested_thresholds(results, probs, run.samples, run.params)
    for r in results:
        r.scores = [
            score(calibration.apply(probs[i], r.temperature) > r.threshold, run.samples[i].mask) for i in r.test
        ]
    return results, _operating_point(list(probs.values()), [s.mask for s in run.samples], run.params)


def _fold_metrics(r: FoldResult) -> dict[str, float]:
    """A fold's test scores as its child run records them."""
    metrics = {key: r.mean(key) for key in SCORE_KEYS}
    if r.threshold is not None:
        metrics |= {
            "threshold": r.threshold,
            "temperature": r.temperature,
            "jaccard_at_study_threshold": r.mean("jaccard", study=True),
        }
    if r.ece is not None:
        metrics |= {"ece_raw": r.ece[0], "ece_calibrated": r.ece[1]}
    return metrics


def _card(run: CVRun, summary: CVSummary, deployed: Deployed | None, weights_dir: Path, run_id: str) -> ModelCard:
    order = [(rep, k) for k in range(run.params.cv.n_folds) for rep in range(len(run.repeats))]
    files = [weight_file(rep, k) for rep, k in order] if run.trainable else []
    return ModelCard(
        name=run.name,
        spec=run.spec,
        threshold=deployed.single.threshold if deployed else None,
        temperature=deployed.single.temperature if deployed else 1.0,
        folds=tuple(WeightFile(file=f, sha256=sha256(weights_dir / f)) for f in files),
        repeats=len(run.repeats),
        ensemble=deployed.ensemble if deployed else None,
        cv_jaccard_mean=summary.jaccard_mean,
        cv_jaccard_std=summary.jaccard_std,
        normalization=run.params.inference.normalization,
        intensity_window=summary.intensity_window,
        tta=run.params.inference.tta,
        domain=training_domain(run.samples),  # what predict and the served model call out of distribution
        cv_run_id=run_id,
    )


def _write_outputs(run: CVRun, summary: CVSummary, plot_dir: Path) -> None:
    write_csv(
        plot_dir / "folds.csv",
        [
            {
                "repeat": r.repeat,
                "fold": r.fold,
                "threshold": r.threshold,
                "temperature": r.temperature if r.threshold is not None else None,
                "images": len(r.test),
                **{k: r.mean(k) for k in SCORE_KEYS},
            }
            for r in run.results
        ],
    )
    first = run.repeats[0]
    for r in first.results:
        for i, scores in zip(r.test, r.scores, strict=True):
            s = run.samples[i]
            title = f"{s.name} · fold {r.fold} (test) · Jaccard {scores.jaccard:.3f}"
            figures.comparison(plot_dir / "overlays" / f"{s.name}.png", s.image[0], s.mask, first.preds[i], title)
    if run.trainable:
        _write_curves(run, summary, plot_dir)


def _write_curves(run: CVRun, summary: CVSummary, plot_dir: Path) -> None:
    """The threshold sweep over all out-of-fold calibrated predictions, the reliability diagram before and after
    calibration, and the per-fold learning curves."""
    grid, results, bins = run.params.threshold.grid(), run.results, run.params.calibration.bins
    raw = [rep.probs[i] for rep in run.repeats for i in range(len(run.samples))]
    masks = [s.mask for _ in run.repeats for s in run.samples]
    calibrated = [calibration.apply(p, summary.temperature) for p in raw]
    curve = jaccard_sweep(calibrated, masks, grid)
    write_csv(
        plot_dir / "threshold_sweep.csv",
        [{"threshold": t, "jaccard": float(j)} for t, j in zip(grid, curve, strict=True)],
    )
    study = run.params.threshold.study
    study_cut = (study, calibration.threshold_to(study, summary.temperature))
    figures.threshold_curve(plot_dir / "threshold_sweep.png", grid, curve, summary.threshold, study_cut)
    reliability = {
        "raw": calibration.reliability(raw, masks, bins),
        "calibrated": calibration.reliability(calibrated, masks, bins),
    }
    for key, rows in reliability.items():  # one file per curve: DVC colours its plots by file
        write_csv(plot_dir / "reliability" / f"{key}.csv", rows)
    figures.reliability_diagram(
        plot_dir / "reliability.png",
        reliability,
        (summary.ece_raw_mean, summary.ece_calibrated_mean),
        summary.temperature,
    )
    write_csv(
        plot_dir / "learning_curve.csv",
        [{"repeat": r.repeat, "fold": r.fold, **asdict(h)} for r in results for h in r.history],
    )
    for r in results:  # one file per fold: folds stop early at different epochs, and a missing epoch is no 0
        rows = [{"epoch": h.epoch, "val_jaccard_tuned": h.val_jaccard_tuned} for h in r.history]
        write_csv(plot_dir / "val_jaccard" / f"{child_name(r.repeat, r.fold, len(run.repeats))}.csv", rows)
    figures.learning_curves(
        plot_dir / "learning_curves.png",
        {child_name(r.repeat, r.fold, len(run.repeats)).replace("-", " "): r.history for r in results},
    )
