"""How well `ncseg predict` counts and sizes NCs on demo-like data, against the generator's truth.

    python -m benchmarks.predict_accuracy [MODEL_URI]   -> benchmarks/predict_accuracy.md

The images are *new*: the demo generator with params.yaml but another seed, so no model has seen them.
Truth: the generator's particles.csv (every NC it placed). Predicted: particles of `ncseg predict`
(watershed-split mask of the registered model). Edge lengths compare NCs away from the image border.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT

HELD_OUT_SEED = 99991


def main() -> None:
    import os

    from ncseg import predict
    from ncseg.config import load_params
    from ncseg.data.layout import IMAGES, PARTICLES
    from ncseg.data.synth import generate, write_dataset

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}")
    uri = sys.argv[1] if len(sys.argv) > 1 else "models:/ncseg-nc-segmenter@champion"
    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        held_out = Path(tmp) / "held-out"
        write_dataset(generate(params.data.synth, HELD_OUT_SEED), held_out, params.data.synth.pixel_size_nm)
        with (held_out / PARTICLES).open() as fh:
            truth = list(csv.DictReader(fh))
        files = sorted((held_out / IMAGES).glob("*.tif"))
        segmenter = predict.load_segmenter(uri, os.environ["MLFLOW_TRACKING_URI"])
        report = predict.run(segmenter, files, Path(tmp) / "out", params.particles)
    rows = []
    for row in report.done:
        name = Path(row["image"]).stem
        crystals = [t for t in truth if t["image"] == name]
        true_edge = float(np.mean([float(t["edge_nm"]) for t in crystals]))
        rows.append(
            {
                "image": name,
                "true": len(crystals),
                "found": row["n_particles"],
                "count_err": row["n_particles"] / len(crystals) - 1,
                "true_edge": true_edge,
                "found_edge": row["edge_nm_mean"],
                "edge_err": row["edge_nm_mean"] / true_edge - 1,
            }
        )
    count = np.array([r["count_err"] for r in rows])
    edge = np.array([r["edge_err"] for r in rows])
    lines = [
        f"# predict vs synthetic truth ({uri})\n",
        "Command: `python -m benchmarks.predict_accuracy`\n",
        "| image | NCs (truth) | particles found | count error | edge nm (truth) | edge nm (found) | edge error |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['image']} | {r['true']} | {r['found']} | {r['count_err']:+.1%} | {r['true_edge']:.2f} | "
        f"{r['found_edge']:.2f} | {r['edge_err']:+.1%} |"
        for r in rows
    ]
    lines.append(
        f"\nCount error: mean {count.mean():+.1%}, mean |error| {np.abs(count).mean():.1%}. "
        f"Edge error: mean {edge.mean():+.1%}, mean |error| {np.abs(edge).mean():.1%}."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "predict_accuracy.md").write_text(text)


if __name__ == "__main__":
    main()
