"""The comparison across architectures: one table (JSON, Markdown, MLflow run) and the best trained model."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ncseg.config import Params
from ncseg.io.atomic import atomic_path
from ncseg.io.tables import write_json

COLUMNS = ("jaccard", "dice", "precision", "recall", "object_f1")


def load_results(params: Params) -> dict[str, dict]:
    results = {}
    for name in params.models:
        path = params.paths.metrics / "cv" / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no CV result for model {name!r}; run `ncseg train {name}` first")
        results[name] = json.loads(path.read_text())
    return results


def best_model(results: dict[str, dict]) -> str:
    """The trainable model with the highest mean CV Jaccard (the classical baseline cannot be registered)."""
    trainable = {n: r for n, r in results.items() if r["kind"] != "classical"}
    if not trainable:
        raise ValueError("no trainable model among the results")
    return max(trainable, key=lambda n: trainable[n]["jaccard_mean"])


def markdown_table(results: dict[str, dict]) -> str:
    def pm(r: dict, key: str) -> str:
        return f"{r[f'{key}_mean']:.3f} ± {r[f'{key}_std']:.3f}"

    head = "| model | Jaccard | Jaccard @ 0.75 | threshold | Dice | precision | recall | object F1 |"
    lines = [head, "|" + "---|" * 8]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["jaccard_mean"]):
        study = pm(r, "jaccard_at_study_threshold") if r.get("threshold") is not None else "—"
        threshold = f"{r['threshold']:.2f}" if r.get("threshold") is not None else "Otsu"
        cells = [pm(r, "jaccard"), study, threshold, *(pm(r, k) for k in COLUMNS[1:])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_gains(results: dict[str, dict]) -> list[dict]:
    """Each network's Jaccard gain over each classical baseline, fold by fold on the same test images: the
    honest way to say whether a model beats the baseline (the folds' difficulty differs more than the models)."""
    rows = []
    baselines = [n for n, r in results.items() if r["kind"] == "classical"]
    for name, r in results.items():
        for base in baselines if r["kind"] != "classical" else []:
            gains = [a - b for a, b in zip(r["jaccard_per_fold"], results[base]["jaccard_per_fold"], strict=True)]
            rows.append(
                {
                    "model": name,
                    "baseline": base,
                    "gain_mean": statistics.mean(gains),
                    "gain_std": statistics.stdev(gains),
                    "folds_better": sum(g > 0 for g in gains),
                    "folds": len(gains),
                }
            )
    return rows


def paired_table(rows: list[dict]) -> str:
    lines = ["| model | vs baseline | Δ Jaccard per fold (mean ± std) | folds better |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: -r["gain_mean"]):
        gain = f"{row['gain_mean']:+.3f} ± {row['gain_std']:.3f}"
        lines.append(f"| {row['model']} | {row['baseline']} | {gain} | {row['folds_better']} of {row['folds']} |")
    return "\n".join(lines) + "\n"


def evaluate(params: Params, root: Path) -> dict:
    """metrics/summary.json + metrics/summary.md, and an MLflow `comparison` run holding the same table."""
    import mlflow

    from ncseg import tracking

    results = load_results(params)
    gains = paired_gains(results)
    summary = {"best": best_model(results), "models": results, "paired_gains": gains}
    table = markdown_table(results) + ("\n" + paired_table(gains) if gains else "")
    write_json(params.paths.metrics / "summary.json", summary)
    with atomic_path(params.paths.metrics / "summary.md") as tmp:
        tmp.write_text(table)
    with tracking.parent_run("comparison", params, root, kind="comparison"):
        mlflow.set_tag("best_model", summary["best"])
        for name, r in results.items():
            mlflow.log_metrics({f"{name}/{k}": r[f"{k}_mean"] for k in COLUMNS})
        mlflow.log_table(
            {"model": list(results), **{f"{k}_mean": [r[f"{k}_mean"] for r in results.values()] for k in COLUMNS}},
            "cv_summary.json",
        )
        mlflow.log_text(table, "cv_summary.md")
    return summary
