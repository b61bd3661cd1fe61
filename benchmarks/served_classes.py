"""Does a 3-class model answer as fast as a binary one? The served model in this process, same network but its head:

    python -m benchmarks.served_classes [--sides N ...] [--repeat R] [--out FILE]   -> benchmarks/served_classes.md

params.yaml's unet4 with 1 output (binary, `output=mask`) and with 3 (background, support, Pt: `output=classes`, the
argmax; and `output=probability`, the (3, H, W) stack), untrained (the cost does not depend on the weights), served
as `register` serves it (NcSegmenter over a model folder, params.yaml's `inference:` settings, `precision: auto` as
this CPU resolves it). A request of one uint16 image; the median of `--repeat` after one warm-up; the cases taken in
turn within each repeat, so a slow spell of the shared CPU falls on all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, cpu_model, write_report

THREE = (
    '[{name: background, kind: region, colour: "#000000"}, {name: support, kind: region, colour: "#3366cc"}, '
    '{name: pt, kind: particles, colour: "#ffd700"}]'
)


def served(folder: Path, labels_override: list[str]):
    """params.yaml's unet4 with the given label set, saved and loaded as the registry serves it."""
    import torch

    from ncseg.config import load_params
    from ncseg.models.zoo import build_net
    from ncseg.records import ModelCard, WeightFile, sha256
    from ncseg.registry.promote import serving_config

    params = load_params(ROOT / "params.yaml", labels_override)
    spec, labels = params.model("unet4"), params.labels
    torch.manual_seed(0)
    net = build_net(spec, len(params.inference.normalization), labels.n_outputs).eval()
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / "fold0.pt")
    card = ModelCard(
        name="unet4",
        spec=spec,
        threshold=0.5 if labels.is_binary else None,
        folds=(WeightFile(file="fold0.pt", sha256=sha256(folder / "fold0.pt"), repeat=0, fold=0),),
        cv_jaccard_mean=0.0,
        cv_jaccard_std=0.0,
        normalization=params.inference.normalization,
        intensity_window=None,
        tta="none",
        cv_run_id="benchmark",
        labels=labels,
    )
    card.save(folder / ModelCard.FILE)
    serving_config(card, params).save(folder / "serving.json")
    return load_served(folder, folder / "serving.json")


def load_served(weights: Path, serving: Path):
    """The pyfunc model as `mlflow models serve` loads it: the weights folder and its serving settings."""
    import mlflow

    from ncseg.serving.model import NcSegmenter

    model = NcSegmenter()
    artifacts = {"weights": str(weights), "serving": str(serving)}
    model.load_context(mlflow.pyfunc.PythonModelContext(artifacts=artifacts, model_config={}))
    return model


def interleaved(cases: dict[str, tuple], request, repeat: int) -> dict[str, float]:
    """The median seconds of each (model, output) case, the cases taken in turn within each repeat (after one
    warm-up of each), so a slow spell of a shared CPU falls on all of them."""
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for turn in range(repeat + 1):
        for name, (model, output) in cases.items():
            start = time.perf_counter()
            model.predict(None, request, {"output": output})
            if turn:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    import torch

    from ncseg.inference.runtime import effective_precision
    from ncseg.serving.protocol import encode_request

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "served_classes.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = served(Path(tmp) / "binary", [])
        three = served(Path(tmp) / "three", [f"labels={THREE}"])
        precision = effective_precision(binary.config.inference.precision, torch.device("cpu"))
        rows = []
        for side in args.sides:
            image = np.random.default_rng(side).integers(0, 4000, (side, side), dtype=np.uint16)
            request = encode_request([image])
            cases = {
                "binary, mask": (binary, "mask"),
                "3-class, classes": (three, "classes"),
                "binary, probability": (binary, "probability"),
                "3-class, probability": (three, "probability"),
            }
            times = interleaved(cases, request, args.repeat)
            base = times["binary, mask"]
            rows += [(side, name, t, t / base) for name, t in times.items()]
            print(json.dumps({"side": side, **times}), flush=True)
    how = (
        f"Command: `python -m benchmarks.served_classes`, on {cpu_model()}, {torch.get_num_threads()} torch threads, "
        f"precision auto = {precision}; median of {args.repeat} after one warm-up, the cases in turn, one run. "
        "params.yaml's unet4 (untrained) with 1 output and with 3; one uint16 image per request, in process "
        "(NcSegmenter.predict)."
    )
    table = ["| image | request | median s | / binary mask |", "|---|---|---|---|"]
    table += [f"| {side}² | {name} | {t:.3f} | {ratio:.3f} |" for side, name, t, ratio in rows]
    write_report(args.out, "Served model: a 3-class answer vs a binary one", how, table)


if __name__ == "__main__":
    main()
