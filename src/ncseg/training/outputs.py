"""What a cross-validation leaves on disk beside its metrics: the fold networks and the model card that lists
them, and the per-fold table, overlays, threshold sweep, reliability diagram and learning curves under plots/.

Every file goes through ncseg.io (a temp file and a rename), into the staging folders `ncseg.training.cv` swaps
in only once every fold has finished.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ncseg import calibration, figures
from ncseg.io.atomic import atomic_path
from ncseg.io.tables import write_csv
from ncseg.metrics import jaccard_sweep
from ncseg.ood import training_domain
from ncseg.records import SCORE_KEYS, CVSummary, ModelCard, WeightFile, sha256
from ncseg.training.plan import child_name
from ncseg.training.scoring import CVRun, Deployed


def weight_file(repeat: int, fold: int) -> str:
    return f"fold{fold}.pt" if repeat == 0 else f"repeat{repeat}-fold{fold}.pt"


def save_weights(net: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)


def model_card(run: CVRun, summary: CVSummary, deployed: Deployed | None, weights_dir: Path, run_id: str) -> ModelCard:
    """The card of a finished CV; its networks in serving order (fold 0 of each repeat, then fold 1, ...), each
    with the repeat and fold it was trained for."""
    order = [(rep, k) for k in range(run.params.cv.n_folds) for rep in range(len(run.repeats))]
    files = {(r, k): weight_file(r, k) for r, k in order} if run.trainable else {}
    return ModelCard(
        name=run.name,
        spec=run.spec,
        threshold=deployed.single.threshold if deployed else None,
        temperature=deployed.single.temperature if deployed else 1.0,
        folds=tuple(
            WeightFile(file=f, sha256=sha256(weights_dir / f), repeat=r, fold=k) for (r, k), f in files.items()
        ),
        repeats=len(run.repeats),
        ensemble=deployed.ensemble if deployed else None,
        cv_jaccard_mean=summary.jaccard_mean,
        cv_jaccard_std=summary.jaccard_std,
        normalization=run.params.inference.normalization,
        intensity_window=summary.intensity_window,
        tta=run.params.inference.tta,
        domain=training_domain(run.samples),  # what predict and the served model call out of distribution
        cv_run_id=run_id,
        labels=run.params.labels,
    )


def write_plots(run: CVRun, summary: CVSummary, plot_dir: Path) -> None:
    """The per-fold table and repeat 0's test overlays; for networks also the curves (of a K-class study, the
    learning curves: it has no threshold to sweep)."""
    labels = run.params.labels
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
                **{f"jaccard_{labels.names[k]}": r.class_mean(k, "jaccard") for k in labels.foreground if r.by_class},
            }
            for r in run.results
        ],
    )
    first = run.repeats[0]
    for r in first.results:
        for i, scores in zip(r.test, r.scores, strict=True):
            s, pred = run.samples[i], first.preds[i] > 0  # the foreground: every class but the background
            title = f"{s.name} · fold {r.fold} (test) · Jaccard {scores.jaccard:.3f}"
            figures.comparison(plot_dir / "overlays" / f"{s.name}.png", s.image[0], s.mask, pred, title)
    if run.trainable and labels.is_binary:
        _write_curves(run, summary, plot_dir)
    elif run.trainable:
        _write_learning_curves(run, plot_dir)


def _write_curves(run: CVRun, summary: CVSummary, plot_dir: Path) -> None:
    """The threshold sweep over all out-of-fold calibrated predictions, the reliability diagram before and after
    calibration, and the per-fold learning curves."""
    grid, bins = run.params.threshold.grid(), run.params.calibration.bins
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
    _write_learning_curves(run, plot_dir)


def _write_learning_curves(run: CVRun, plot_dir: Path) -> None:
    """Every fold's curves, one table and one picture."""
    results = run.results
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
