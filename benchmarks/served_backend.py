"""The served model with ONNX Runtime vs torch behind it: what `inference.backend: auto` chose, measured whole.

    python -m benchmarks.served_backend [--model FOLDER] [--side 2048] [--repeat 5] [--out FILE]
        -> benchmarks/served_backend.md

The model: `--model`, a trained model folder (e.g. `models/unet4` after `dvc repro`: its card, its fold networks
and their calibration), on a demo-like micrograph (the demo generator at `--side` px); else params.yaml's unet4
untrained (the cost does not depend on the weights) on a random uint16 image, which times the backends but says
little of their agreement (an untrained network's probabilities sit near the cut). Served as `register` serves it
(NcSegmenter over a model folder, params.yaml's `inference:` settings: 1088 px tiles, context 32, `precision: auto`
as this CPU resolves it), once with `backend: torch` and once with `backend: onnxruntime`. The image goes through
`segment` (tiling, normalisation, calibration, uncertainty: what predict and the server run), tta none; medians of
`--repeat` after one warm-up, the backends taken in turn. Agreement: the share of pixels whose mask (the served
threshold) is the same under both; the largest probability difference. Load: the seconds to load each model (ONNX
Runtime exports each network when the model loads).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from benchmarks.common import ROOT, cpu_model, write_report
from benchmarks.predict_speed import demo_images
from benchmarks.served_classes import load_served, served


def served_folder(model_dir: Path, folder: Path, overrides: list[str]):
    """A trained model folder served as `register` serves it, with params.yaml's `inference:` and `overrides`."""
    from ncseg.config import load_params
    from ncseg.records import ModelCard
    from ncseg.registry.promote import serving_config

    card = ModelCard.load(model_dir / ModelCard.FILE)
    folder.mkdir(parents=True)
    serving_config(card, load_params(ROOT / "params.yaml", overrides)).save(folder / "serving.json")
    return load_served(model_dir, folder / "serving.json")


def main() -> None:
    import torch

    from ncseg.inference.runtime import effective_backend, effective_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model folder (default: unet4 untrained)")
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "served_backend.md")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    models, load_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("torch", "onnxruntime"):
            start = time.perf_counter()
            overrides = [f"inference.backend={backend}"]
            if args.model:
                models[backend] = served_folder(args.model, Path(tmp) / backend, overrides)
            else:
                models[backend] = served(Path(tmp) / backend, overrides)
            load_s[backend] = time.perf_counter() - start
        if args.model:
            image = tifffile.imread(demo_images(ROOT / "params.yaml", [args.side], Path(tmp))[args.side])
        else:
            image = np.random.default_rng(0).integers(0, 4000, (args.side, args.side), dtype=np.uint16)
    answers = {name: model.segment(image, "none") for name, model in models.items()}  # the warm-up, compared
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeat):
        for name, model in models.items():
            start = time.perf_counter()
            model.segment(image, "none")
            seconds[name].append(time.perf_counter() - start)
    cut = models["torch"].config.threshold
    reference = answers["torch"].classes(cut)
    base = statistics.median(seconds["torch"])
    table = ["| backend | load s | segment s | / torch | mask agreement with torch | max prob difference |"]
    table.append("|---|---|---|---|---|---|")
    for name, maps in answers.items():
        median = statistics.median(seconds[name])
        agree = float(np.mean(maps.classes(cut) == reference)) * 100
        diff = float(np.abs(maps.probability - answers["torch"].probability).max())
        ratio = median / base
        table.append(f"| {name} | {load_s[name]:.1f} | {median:.2f} | {ratio:.2f} | {agree:.3f} % | {diff:.1e} |")
        print(table[-1], flush=True)
    precision = effective_precision("auto", cpu)
    what = (
        f"{args.model} (trained), a demo-like {args.side}² image"
        if args.model
        else f"params.yaml's unet4 untrained, one random {args.side}² uint16 image"
    )
    command = "python -m benchmarks.served_backend" + (f" --model {args.model}" if args.model else "")
    how = (
        f"Command: `{command}`, on {cpu_model()}, {torch.get_num_threads()} torch threads, "
        f"precision auto = {precision}, so `backend: auto` = {effective_backend('auto', 'auto', cpu)} here; {what}, "
        f"medians of {args.repeat}, the backends in turn, one run."
    )
    write_report(args.out, "Served model: ONNX Runtime vs torch", how, table)


if __name__ == "__main__":
    main()
