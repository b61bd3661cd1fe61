"""Scoring a cross-validation from its out-of-fold predictions: numpy only, no network runs here.

- fold k's temperature and threshold are fitted on the out-of-fold predictions of the *other* folds, so no fold
  is scored at a setting tuned on itself; the deployed ones use all folds;
- the networks are also scored at the study's fixed threshold, the classical baseline as it segments;
- the R-network ensemble (each image's mean over the R networks that never saw it, one per repeat) is scored on
  repeat 0's folds like any model: its gain measured, not assumed;
- a study of more than two classes (ncseg.labels) is scored per class at the argmax, which has nothing to tune,
  and headlined by the mean over its foreground classes; its temperature (softmax(log p / T), which leaves the
  argmax where it is) is fitted and checked like the binary one, fold k's on the other folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ncseg import calibration
from ncseg.config import ClassicalParams, ModelParams, Params
from ncseg.metrics import Scores, best_threshold, class_scores, diameter_error, headline, score
from ncseg.records import SCORE_KEYS, CVSummary, Operating
from ncseg.training.plan import Split

if TYPE_CHECKING:
    from ncseg.data.dataset import Sample
    from ncseg.labels import LabelSet
    from ncseg.metrics import EpochLog


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
    by_class: list[dict[int, Scores]] = field(default_factory=list)  # per test image, of a K-class study
    material: list[float] = field(default_factory=list)  # per test image: its foreground classes as one mask
    diameter_errors: dict[int, float | None] = field(default_factory=dict)  # per particle class, over its test images

    def mean(self, key: str, study: bool = False) -> float:
        return float(np.mean([getattr(s, key) for s in (self.study_scores if study else self.scores)]))

    def class_mean(self, k: int, key: str) -> float:
        return float(np.mean([getattr(s[k], key) for s in self.by_class]))


@dataclass
class Repeat:
    """One repeat's split and what its folds produced."""

    split: Split
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


@dataclass(frozen=True)
class Deployed:
    """The operating points the model card records: one network's, and the R-network ensemble's."""

    single: Operating
    ensemble: Operating | None


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


def score_nested(
    results: list[FoldResult], probs: dict[int, np.ndarray], samples: list[Sample], params: Params
) -> dict[int, np.ndarray]:
    """Every fold's test images cut at the temperature and threshold chosen on the other folds, and scored (the
    way CV scores any set of out-of-fold probabilities); returns the masks."""
    nested_thresholds(results, probs, samples, params)
    masks = {}
    for r in results:
        masks |= {i: calibration.apply(probs[i], r.temperature) > r.threshold for i in r.test}
        r.scores = [score(masks[i], samples[i].mask) for i in r.test]
    return masks


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def score_cv(run: CVRun, window: tuple[float, float] | None) -> tuple[CVSummary, Deployed | None]:
    """Score every fold's test images of every repeat (networks at their nested threshold, and at the study's;
    the baseline as is), then the R-network ensemble; returns the summary and the deployed operating points."""
    if not run.params.labels.is_binary:
        return _score_classes(run, window)
    operating = _score_networks(run) if run.trainable else None
    if not run.trainable:
        for r in run.results:
            r.scores = [score(run.repeats[r.repeat].preds[i], run.samples[i].mask) for i in r.test]
    values: dict = {}
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
        values |= _ensemble_values(ensemble[0])
    values |= _diameter_errors(run)
    summary = CVSummary(
        threshold=operating.threshold if operating else None,
        study_threshold=run.params.threshold.study if run.trainable else None,
        fold_thresholds=tuple(r.threshold for r in run.results) if run.trainable else None,
        **_common(run, window),
        **values,
    )
    return summary, Deployed(operating, ensemble[1] if ensemble else None) if operating else None


def _common(run: CVRun, window: tuple[float, float] | None) -> dict:
    """The summary's fields every kind of model and label set fills alike."""
    values: dict = {"model": run.name, "kind": run.spec.kind, "n_folds": run.params.cv.n_folds}
    for key in SCORE_KEYS:
        values[f"{key}_mean"], values[f"{key}_std"] = _mean_std([r.mean(key) for r in run.results])
    repeat_means = [float(np.mean([r.mean("jaccard") for r in rep.results])) for rep in run.repeats]
    return values | {
        "n_images": len(run.samples),
        "repeats": len(run.repeats),
        "jaccard_per_fold": tuple(r.mean("jaccard") for r in run.results),
        "jaccard_repeat_means": tuple(repeat_means),
        "jaccard_between_repeat_std": _mean_std(repeat_means)[1] if len(repeat_means) > 1 else None,
        "intensity_window": window,
    }


def _diameter_errors(run: CVRun) -> dict:
    """A binary study's mean-diameter bias per fold, from the masks it was scored on (its nested threshold)."""
    for rep in run.repeats:
        for r in rep.results:
            masks, truths = [rep.preds[i] for i in r.test], [run.samples[i].mask for i in r.test]
            r.diameter_errors = {1: diameter_error(masks, truths)}
    return _diameter_summary(run.results, 1)


def _diameter_summary(results: list[FoldResult], k: int) -> dict:
    """Class k's diameter error, mean and std over the folds whose test images hold it (none: nothing)."""
    errors = [e for r in results if (e := r.diameter_errors[k]) is not None]
    return dict(zip(("diameter_error_mean", "diameter_error_std"), _mean_std(errors), strict=True)) if errors else {}


def _ensemble_values(results: list[FoldResult]) -> dict:
    per_fold = [r.mean("jaccard") for r in results]
    mean, std = _mean_std(per_fold)
    return {"ensemble_jaccard_mean": mean, "ensemble_jaccard_std": std, "ensemble_jaccard_per_fold": tuple(per_fold)}


def _score_classes(run: CVRun, window: tuple[float, float] | None) -> tuple[CVSummary, Deployed | None]:
    """A K-class study: every test image's argmax class map (a baseline's own) scored class by class; the
    headline keys average the foreground classes, `classes` holds each one's mean and std over folds. A network's
    deployed point is its temperature (the argmax has no threshold): one network's, and the R-network ensemble's,
    fitted on the ensemble's own out-of-fold mean probabilities (a mean of R softmaxes is less confident than one)."""
    labels = run.params.labels
    for rep in run.repeats:
        if run.trainable:
            rep.preds |= {i: p.argmax(0).astype(np.uint8) for i, p in rep.probs.items()}
        _score_maps(rep.results, rep.preds, run)
    values: dict = {}
    ensemble = None
    if run.trainable and len(run.repeats) > 1:
        mean_probs = {i: np.mean([rep.probs[i] for rep in run.repeats], axis=0) for i in range(len(run.samples))}
        results = [FoldResult(r.fold, r.test, None) for r in run.repeats[0].results]
        _score_maps(results, {i: p.argmax(0).astype(np.uint8) for i, p in mean_probs.items()}, run)
        values = _ensemble_values(results)
        maps = [s.classes for s in run.samples]
        temperature = _class_temperature(list(mean_probs.values()), maps, run.params)
        ensemble = Operating(threshold=None, temperature=temperature)
    if run.trainable:
        values |= _calibrate_classes(run)
    per_class = {}
    for k in labels.foreground:
        per_class[labels.names[k]] = {
            f"{key}_{stat}": value
            for key in _class_keys(k, labels)
            for stat, value in zip(("mean", "std"), _mean_std([r.class_mean(k, key) for r in run.results]), strict=True)
        }
    for k in labels.particle_ids:
        per_class[labels.names[k]] |= _diameter_summary(run.results, k)
    per_fold = {labels.names[k]: tuple(r.class_mean(k, "jaccard") for r in run.results) for k in labels.foreground}
    material = dict(zip(_MATERIAL, _mean_std([float(np.mean(r.material)) for r in run.results]), strict=True))
    summary = CVSummary(
        threshold=None,
        study_threshold=None,
        fold_thresholds=None,
        decision="argmax",
        classes=per_class,
        class_jaccard_per_fold=per_fold,
        **material,
        **_common(run, window),
        **values,
    )
    single = Operating(threshold=None, temperature=values["temperature"]) if run.trainable else None
    return summary, Deployed(single, ensemble) if single else None


_MATERIAL = ("material_jaccard_mean", "material_jaccard_std")


def _class_temperature(probs: list[np.ndarray], maps: list[np.ndarray], params: Params) -> float:
    c = params.calibration
    if c.method == "none":
        return 1.0
    return calibration.fit_class_temperature(probs, maps, max_pixels=c.fit_pixels, seed=params.seed)


def _calibrate_classes(run: CVRun) -> dict:
    """Fold k's temperature from the other folds of its repeat, its top-label calibration error on its own test
    images before and after; the deployed temperature from every out-of-fold prediction."""
    samples, bins = run.samples, run.params.calibration.bins
    for rep in run.repeats:
        for r in rep.results:
            others = [i for o in rep.results if o is not r for i in o.test]
            r.temperature = _class_temperature(
                [rep.probs[i] for i in others], [samples[i].classes for i in others], run.params
            )
            raw = [calibration.top_label(rep.probs[i], samples[i].classes) for i in r.test]
            tested = [calibration.apply_classes(rep.probs[i], r.temperature) for i in r.test]
            cal = [calibration.top_label(p, samples[i].classes) for p, i in zip(tested, r.test, strict=True)]
            r.ece = (calibration.ece(*zip(*raw, strict=True), bins), calibration.ece(*zip(*cal, strict=True), bins))
    probs = [rep.probs[i] for rep in run.repeats for i in range(len(samples))]
    return {
        "temperature": _class_temperature(probs, [s.classes for _ in run.repeats for s in samples], run.params),
        "ece_raw_mean": float(np.mean([r.ece[0] for r in run.results])),
        "ece_calibrated_mean": float(np.mean([r.ece[1] for r in run.results])),
    }


def _score_maps(results: list[FoldResult], preds: dict[int, np.ndarray], run: CVRun) -> None:
    labels = run.params.labels
    for r in results:
        # every image has its class map: cross_validate checked them all before training (loop.class_targets)
        r.by_class = [class_scores(preds[i], run.samples[i].classes, labels) for i in r.test]
        r.material = [score(preds[i] > 0, run.samples[i].classes > 0).jaccard for i in r.test]
        r.scores = [headline(c, labels) for c in r.by_class]
        r.diameter_errors = {
            k: diameter_error([preds[i] == k for i in r.test], [run.samples[i].classes == k for i in r.test])
            for k in labels.particle_ids
        }


def _operating_point(probs: list[np.ndarray], masks: list[np.ndarray], params: Params) -> Operating:
    """Temperature on all out-of-fold predictions, then the threshold on the calibrated ones."""
    temperature = _temperature(probs, masks, params)
    calibrated = [calibration.apply(p, temperature) for p in probs]
    return Operating(threshold=best_threshold(calibrated, masks, params.threshold.grid()), temperature=temperature)


def _score_networks(run: CVRun) -> Operating:
    """Every repeat's fold scores at nested thresholds, and at the study's raw cut; returns the operating point
    chosen on all out-of-fold predictions of all repeats."""
    samples, study = run.samples, run.params.threshold.study
    for rep in run.repeats:
        rep.preds |= score_nested(rep.results, rep.probs, samples, run.params)
        for r in rep.results:
            r.study_scores = [score(rep.probs[i] > study, samples[i].mask) for i in r.test]
    probs = [rep.probs[i] for rep in run.repeats for i in range(len(samples))]
    return _operating_point(probs, [s.mask for _ in run.repeats for s in samples], run.params)


def _score_ensemble(run: CVRun) -> tuple[list[FoldResult], Operating]:
    """The mean probability of the R networks that never saw an image (one per repeat), scored on repeat 0's
    folds with the same nested calibration and threshold."""
    probs = {i: np.mean([rep.probs[i] for rep in run.repeats], axis=0) for i in range(len(run.samples))}
    results = [FoldResult(r.fold, r.test, None) for r in run.repeats[0].results]
    score_nested(results, probs, run.samples, run.params)
    return results, _operating_point(list(probs.values()), [s.mask for s in run.samples], run.params)


def _class_keys(k: int, labels: LabelSet) -> tuple[str, ...]:
    """The scores that mean something for class k: object counts only where the class is particles."""
    return SCORE_KEYS if k in labels.particle_ids else ("jaccard", "dice", "precision", "recall")


def fold_metrics(r: FoldResult, labels: LabelSet) -> dict[str, float]:
    """A fold's test scores as its child run records them; a K-class study's per class too (`pt/jaccard`), so
    the fold that loses a rare class shows in the MLflow UI, not only in the summary file."""
    metrics = {key: r.mean(key) for key in SCORE_KEYS}
    if r.by_class:
        for k in labels.foreground:
            metrics |= {f"{labels.names[k]}/{key}": r.class_mean(k, key) for key in _class_keys(k, labels)}
    for k, error in r.diameter_errors.items():
        if error is not None:
            metrics[f"{labels.names[k]}/diameter_error" if r.by_class else "diameter_error"] = error
    if r.threshold is not None:
        metrics |= {
            "threshold": r.threshold,
            "temperature": r.temperature,
            "jaccard_at_study_threshold": r.mean("jaccard", study=True),
        }
    if r.ece is not None:
        metrics |= {"ece_raw": r.ece[0], "ece_calibrated": r.ece[1]}
    return metrics
