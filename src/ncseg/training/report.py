"""The comparison across architectures: one table (JSON, Markdown, MLflow run) and the best trained model."""

from __future__ import annotations

import statistics
from pathlib import Path

from scipy import stats

from ncseg.config import Params
from ncseg.io.atomic import atomic_path
from ncseg.records import CVSummary, ModelCard, PairedGain, RecordError, Summary, score_label

COLUMNS = ("jaccard", "dice", "precision", "recall", "object_f1")


def load_results(params: Params) -> dict[str, CVSummary]:
    results = {}
    for name in params.models:
        path = params.paths.metrics / "cv" / f"{name}.json"
        if not path.exists():
            raise RecordError(f"{path}: no CV result for model {name!r}; run `ncseg train {name}` first")
        results[name] = CVSummary.load(path)
    return results


def best_model(results: dict[str, CVSummary], score: str | None = None) -> str:
    """The trainable model with the highest mean CV `score` (register.score; the classical baseline cannot be
    registered)."""
    trainable = {n: r for n, r in results.items() if r.trainable}
    if not trainable:
        raise RecordError("no trainable model among the results: params.yaml `models:` lists only baselines")
    return max(trainable, key=lambda n: trainable[n].score_mean(score))


def markdown_table(results: dict[str, CVSummary]) -> str:
    def pm(r: CVSummary, key: str) -> str:
        return f"{r.mean(key):.3f} ± {r.std(key):.3f}"

    def size(r: CVSummary) -> str:
        if r.diameter_error_mean is None:
            return "—"
        return f"{100 * r.diameter_error_mean:+.1f} % ± {100 * (r.diameter_error_std or 0):.1f}"

    head = "| model | Jaccard | Jaccard @ 0.75 | threshold | Dice | precision | recall | object F1 | diameter error |"
    lines = [head, "|" + "---|" * 9]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1].jaccard_mean):
        study = pm(r, "jaccard_at_study_threshold") if r.threshold is not None else "—"
        threshold = f"{r.threshold:.2f}" if r.threshold is not None else _decision(r)
        cells = [pm(r, "jaccard"), study, threshold, *(pm(r, k) for k in COLUMNS[1:]), size(r)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _classes_table(results) + _repeats_table(results) + _calibration_table(results)


def _classes_table(results: dict[str, CVSummary]) -> str:
    """A K-class study: each foreground class's Jaccard, and for particle classes what a counting user reads —
    object F1 and the bias of the mean particle diameter (signed, relative to the reference's); then the material
    (every foreground class as one mask), which a binary study of the same images scores."""
    rows = {n: r.classes for n, r in results.items() if r.classes}
    if not rows:
        return ""
    classes = list(next(iter(rows.values())))
    particles = [c for c in classes if "object_f1_mean" in rows[next(iter(rows))][c]]
    head = [f"{c} Jaccard" for c in classes] + [f"{c} {m}" for c in particles for m in ("object F1", "diameter error")]
    head.append("material Jaccard")
    lines = ["", "| model | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]

    def pm(values: dict[str, float], key: str, percent: bool = False) -> str:
        if f"{key}_mean" not in values:
            return "—"
        scale, fmt = (100, "+.1f") if percent else (1, ".3f")
        mean, std = values[f"{key}_mean"] * scale, values[f"{key}_std"] * scale
        return f"{mean:{fmt}}{' %' if percent else ''} ± {std:.{1 if percent else 3}f}"

    for name, per in sorted(rows.items(), key=lambda kv: -results[kv[0]].jaccard_mean):
        cells = [pm(per[c], "jaccard") for c in classes]
        cells += [cell for c in particles for cell in (pm(per[c], "object_f1"), pm(per[c], "diameter_error", True))]
        cells.append(pm(results[name].model_dump(), "material_jaccard"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _decision(r: CVSummary) -> str:
    """Where a model has no threshold: a binary baseline's Otsu, or a K-class study's rule (argmax for networks,
    intensity levels fitted on the training side for the baseline)."""
    if r.decision is None:
        return "Otsu"
    return "levels" if not r.trainable else r.decision


def _repeats_table(results: dict[str, CVSummary]) -> str:
    """With repeats: the run-to-run noise of each CV mean and what the R-network ensemble scores on the same
    folds (nothing for a single run, which measures neither)."""
    rows = [r for r in results.values() if r.repeats > 1]
    if not rows:
        return ""
    lines = [
        "",
        "| model | repeats x folds | Jaccard (all folds) | CV mean per repeat | between-repeat std | R-net ensemble |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r.jaccard_mean):
        means = ", ".join(f"{m:.3f}" for m in r.jaccard_repeat_means)
        ensemble = f"{r.ensemble_jaccard_mean:.3f} ± {r.ensemble_jaccard_std:.3f}" if r.ensemble_jaccard_mean else "—"
        lines.append(
            f"| {r.model} | {r.repeats} x {r.n_folds} | {r.jaccard_mean:.3f} ± {r.jaccard_std:.3f} | {means} | "
            f"{r.jaccard_between_repeat_std:.4f} | {ensemble} |"
        )
    return "\n".join(lines) + "\n"


def _calibration_table(results: dict[str, CVSummary]) -> str:
    rows = [r for r in results.values() if r.temperature is not None]
    if not rows:
        return ""
    lines = [
        "",
        "| model | temperature | ECE raw (test folds) | ECE calibrated (T from the other folds) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.temperature:.2f} | {r.ece_raw_mean:.4f} | {r.ece_calibrated_mean:.4f} |"
        for r in sorted(rows, key=lambda r: -r.jaccard_mean)
    ]
    return "\n".join(lines) + "\n"


def paired_gains(results: dict[str, CVSummary], score: str | None = None) -> list[PairedGain]:
    """Each network's gain in `score` (register.score) over each classical baseline and over each network ranked
    below it, fold by fold on the same test images: the honest way to compare (the folds' difficulty differs more
    than the models), with a 95 % interval that says whether the difference exceeds the noise."""
    ranked = sorted(results, key=lambda n: -results[n].score_mean(score))
    pairs = [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1 :] if results[a].trainable]
    pairs += [
        (a, b)
        for i, b in enumerate(ranked)
        for a in ranked[i + 1 :]
        if results[a].trainable and not results[b].trainable
    ]
    return [paired_gain(results[a], results[b], score) for a, b in pairs]


def paired_gain(model: CVSummary, baseline: CVSummary, score: str | None = None) -> PairedGain:
    """The mean fold-paired gain with the corrected resampled t-interval (Nadeau & Bengio 2003; Bouckaert &
    Frank 2004): CV folds share most of their training images, so their scores are correlated and the plain
    t-interval over R x K folds is too narrow. The variance is inflated by n_test / n_train = 1 / (K - 1)."""
    shape = ("n_images", "n_folds", "repeats")
    if any(getattr(model, k) != getattr(baseline, k) for k in shape):
        raise RecordError(
            f"{model.model} ({model.n_images} images, {model.repeats} x {model.n_folds} folds) and {baseline.model} "
            f"({baseline.n_images} images, {baseline.repeats} x {baseline.n_folds} folds) were not scored on the "
            "same folds: retrain both on the current data and params (`dvc repro`)"
        )
    return fold_paired_gain(
        model.model,
        list(model.score_per_fold(score)),
        baseline.model,
        list(baseline.score_per_fold(score)),
        model.n_folds,
    )


def fold_paired_gain(
    model: str, scores: list[float], baseline: str, baseline_scores: list[float], n_folds: int
) -> PairedGain:
    """`paired_gain` on two lists of per-fold scores over the same R x K folds, in the same order."""
    gains = [a - b for a, b in zip(scores, baseline_scores, strict=True)]
    n = len(gains)
    mean, std = statistics.mean(gains), statistics.stdev(gains)
    half = float(stats.t.ppf(0.975, n - 1)) * std * (1 / n + 1 / (n_folds - 1)) ** 0.5
    return PairedGain(
        model=model,
        baseline=baseline,
        gain_mean=mean,
        gain_std=std,
        ci_low=mean - half,
        ci_high=mean + half,
        folds_better=sum(g > 0 for g in gains),
        folds=n,
    )


def paired_table(rows: list[PairedGain], score: str | None = None) -> str:
    lines = [
        f"| model | vs | Δ {score_label(score)} per fold (mean ± std) | 95 % interval (corrected) | folds better "
        "| beyond noise |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        gain = f"{row.gain_mean:+.3f} ± {row.gain_std:.3f}"
        interval = f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
        verdict = "yes" if row.beyond_noise else "no"
        lines.append(
            f"| {row.model} | {row.baseline} | {gain} | {interval} | {row.folds_better} of {row.folds} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def evaluate(params: Params, root: Path) -> Summary:
    """metrics/summary.json + metrics/summary.md, and an MLflow `comparison` run holding the same table; each
    model's CV run gets a description with its rank. The files are written once the run has started: a store that
    refuses (damaged, or still pointing at the folder this project was copied from) leaves the old ones in place."""
    from ncseg.tracking import runs

    results, score = load_results(params), params.registry.score
    gains = paired_gains(results, score)
    summary = Summary(best=best_model(results, score), models=results, paired_gains=tuple(gains), score=score)
    table = markdown_table(results) + ("\n" + paired_table(gains, score) if gains else "")
    with runs.parent_run("comparison", params, root, kind="comparison") as run_id:
        summary.save(params.paths.metrics / Summary.FILE)
        with atomic_path(params.paths.metrics / "summary.md") as tmp:
            tmp.write_text(table)
        means = {name: {k: r.mean(k) for k in COLUMNS} for name, r in results.items()}
        runs.log_comparison(summary.best, means, table)
        runs.describe_run(run_id, f"Comparison of {len(results)} models on the same folds.\n\n{table}")
    _describe_cv_runs(params, summary)
    return summary


def _describe_cv_runs(params: Params, summary: Summary) -> None:
    """Rank and score in each model's newest CV run description: what a user sees first in the run list."""
    from ncseg.tracking import runs

    ranked = sorted(summary.models.values(), key=lambda r: -r.score_mean(summary.score))
    for rank, r in enumerate(ranked, start=1):
        card = params.paths.models / r.model / ModelCard.FILE
        if not card.exists():
            continue
        run_id = ModelCard.load(card).cv_run_id  # the run that measured these numbers, not merely the newest
        gains = "; ".join(
            f"{g.gain_mean:+.3f} over {g.baseline} ({g.folds_better} of {g.folds} folds better)"
            for g in summary.baseline_gains(r.model)
        )
        ranked_by = f" (by {score_label(summary.score)}: {r.score_mean(summary.score):.3f})" if summary.score else ""
        text = (
            f"Rank {rank} of {len(ranked)}{ranked_by}: CV Jaccard {r.jaccard_mean:.3f} ± {r.jaccard_std:.3f} "
            f"over {r.n_folds} grouped folds ({r.n_images} images)."
            + (f" Paired: {gains}." if gains else "")
            + (" Best trainable model: the register stage's candidate." if r.model == summary.best else "")
        )
        runs.describe_run(run_id, text)
