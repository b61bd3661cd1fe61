"""The comparison across architectures: one table (JSON, Markdown, MLflow run) and the best trained model."""

from __future__ import annotations

import json
from pathlib import Path

from ncseg.config import Params
from ncseg.io.images import atomic_path

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


def evaluate(params: Params, root: Path) -> dict:
    """metrics/summary.json + metrics/summary.md, and an MLflow `comparison` run holding the same table."""
    import mlflow

    from ncseg import tracking

    results = load_results(params)
    summary = {"best": best_model(results), "models": results}
    table = markdown_table(results)
    with atomic_path(params.paths.metrics / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
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
