"""How fast `ncseg predict` is, and how much memory it takes, on demo-like micrographs of growing size:

    python -m benchmarks.predict_speed [-p PARAMS] [--model URI | --arch NAME ...] [--before SRC] [--sides N ...]
        [--out FILE]   -> benchmarks/predict_speed.md

The model: `--model` (a registry URI or model folder, e.g. the demo champion), else each `--arch` of params.yaml
(default: unet4 and smp-unet-resnet34, the demo champion's) trained for a few epochs on demo images (masks good
enough that the outputs cost what they cost on a real one) and saved as `register` saves the served model. The
image: the demo generator at 2048 px, cropped or tiled to each size.

Each measurement runs in a fresh process, with `--threads` torch threads (default 1: on a CPU shared with other
work, two threads wait on each other's core and the times scatter): `ncseg.predict.run` on the image (mask, labels,
particle table, uncertainty, overlay, summary; the model loaded before the clock starts), the best of `--repeat` runs
up to 2048 px, with every forward call of the served networks counted and timed; the memory held once the model is
loaded and the peak while predicting (Linux's VmHWM, reset after loading); and a bare probability: the networks over
each view of the image once (`predict_tta`), calibrated, which any prediction costs at least. `--before SRC`
measures an older tree the same way in the same run (its `src` folder, e.g. from `git archive COMMIT src | tar -x -C
/tmp/old`), so before and after share a machine, a model and an image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, cpu_model

QUICK_EPOCHS = 12  # of params.yaml's train settings: enough for demo-like masks
SIDES = (512, 2048, 4096, 8192)
WITH_D4 = 2048  # sides up to this one are also measured with d4 (8 views)


def quick_model(params_file: Path, arch: str, folder: Path) -> str:
    """params.yaml's `arch` trained briefly on demo images, saved where `ncseg predict` can load it."""
    import mlflow
    import torch

    from ncseg.config import load_params
    from ncseg.data.dataset import Sample
    from ncseg.data.synth import generate
    from ncseg.normalization import intensity_window, views
    from ncseg.records import ModelCard, ServingConfig, WeightFile, sha256
    from ncseg.registry.promote import serving_config
    from ncseg.serving.model import MODEL_CODE
    from ncseg.serving.protocol import signature
    from ncseg.training.loop import fit_new_net

    params = load_params(params_file, [f"train.epochs={QUICK_EPOCHS}"])
    normalization, demo = params.inference.normalization, generate(params.data.synth, params.seed)
    window = intensity_window([s.image for s in demo]) if "dataset" in normalization else None
    size = params.data.synth.pixel_size_nm
    samples = [Sample(s.name, s.name, s.image, views(s.image, normalization, window), s.mask, size) for s in demo]
    spec = params.model(arch)
    net, history = fit_new_net(spec, samples[:-2], samples[-2:], params, params.seed)
    weights = folder / "weights"
    weights.mkdir(parents=True)
    torch.save(net.state_dict(), weights / "fold0.pt")
    card = ModelCard(
        name=arch,
        spec=spec,
        threshold=params.threshold.study,
        folds=(WeightFile(file="fold0.pt", sha256=sha256(weights / "fold0.pt"), repeat=0, fold=0),),
        cv_jaccard_mean=max(h.val_jaccard_tuned for h in history),
        cv_jaccard_std=0.0,
        normalization=normalization,
        intensity_window=window,
        tta=params.inference.tta,
        cv_run_id="benchmark",
    )
    card.save(weights / ModelCard.FILE)
    config = serving_config(card, params)
    config.save(folder / ServingConfig.FILE)
    mlflow.pyfunc.save_model(
        folder / "model",
        python_model=str(MODEL_CODE),
        artifacts={"weights": str(weights), "serving": str(folder / ServingConfig.FILE)},
        signature=signature(config.threshold, config.tta),
        pip_requirements=[],  # not inferred: that would load the model once more in a subprocess
    )
    return str(folder / "model")


def demo_images(params_file: Path, sides: list[int], folder: Path) -> dict[int, Path]:
    """One demo-like 2048 px micrograph, cropped to smaller sides and tiled to larger ones (its particles' density
    stays), written as calibrated TIFFs."""
    from ncseg.config import load_params
    from ncseg.data.synth import render
    from ncseg.io.images import write_tiff

    params = load_params(params_file, ["data.synth.size_px=2048"])
    synth = params.data.synth
    image = render(np.random.default_rng(params.seed), synth, "demo", 0.5).image
    paths = {}
    for side in sides:
        reps = -(-side // image.shape[0])
        paths[side] = folder / f"demo{side}.tif"
        write_tiff(paths[side], np.tile(image, (reps, reps))[:side, :side], synth.pixel_size_nm)
    return paths


def _counted(nets: list) -> dict[str, float]:
    """Every forward call of the served networks, counted and timed (torch on a CPU computes as it is called)."""
    tally = {"calls": 0, "seconds": 0.0}
    for net in nets:

        def forward(x, _forward=net.forward):
            start = time.perf_counter()
            try:
                return _forward(x)
            finally:
                tally["calls"] += 1
                tally["seconds"] += time.perf_counter() - start

        net.forward = forward
    return tally


def _rss_gib(field: str) -> float:
    """This process's resident memory from /proc (Linux): VmRSS now, VmHWM the peak since it was last reset."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 2**20


def measure(model: str, image: Path, tta: str, repeat: int, threads: int) -> dict:
    """One size and test-time augmentation, in this (fresh) process: see the module's docstring."""
    import torch

    from ncseg import predict
    from ncseg.calibration import apply
    from ncseg.inference.tiling import RawViews
    from ncseg.inference.tta import predict_tta
    from ncseg.io.images import read_image

    torch.set_num_threads(threads)
    segmenter = predict.load_segmenter(model, f"sqlite:///{image.parent / 'mlflow.db'}")
    loaded_gib = _rss_gib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again here: predict's own, not the loading's
    served, tally = segmenter.served, _counted(segmenter.served.runners)  # what answers: torch or ONNX Runtime
    runs = []  # (seconds, forward calls, seconds in them) of each run
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeat):
            tally.update(calls=0, seconds=0.0)
            start = time.perf_counter()
            report = predict.run(segmenter, [image], Path(out), segmenter.particles, tta=tta)
            runs.append((time.perf_counter() - start, tally["calls"], tally["seconds"]))
    peak_gib = _rss_gib("VmHWM")
    predict_s, calls, network_s = min(runs)
    tally["calls"] = 0
    raw = read_image(image).data
    bare = []
    for _ in range(repeat):
        start = time.perf_counter()
        source = RawViews.of(raw, served.config.normalization, served.config.intensity_window)
        tiling = served.config.inference.tiling()
        apply(predict_tta(served.runners, served.geometry, source, tta, **tiling), served.config.temperature)
        bare.append(time.perf_counter() - start)
    return {
        "predict_s": predict_s,
        "bare_s": min(bare),
        "bare_calls": tally["calls"] / repeat,
        "calls": calls,
        "network_s": network_s,
        "particles": report.done[0]["n_particles"],
        "loaded_gib": loaded_gib,
        "peak_gib": peak_gib,
    }


def _child(model: str, image: Path, tta: str, repeat: int, threads: int, src: Path | None) -> dict:
    """`measure` in a fresh process, on this tree's ncseg or the one under `src`."""
    env = dict(os.environ, PYTHONPATH=str(src)) if src else dict(os.environ)
    command = [sys.executable, "-m", "benchmarks.predict_speed", "--measure", model, str(image), tta]
    command += [str(repeat), str(threads)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def _row(model: str, code: str, side: int, tta: str, m: dict) -> str:
    return (
        f"| {model} | {code} | {side}² | {tta} | {m['particles']} | {m['calls'] / m['bare_calls']:g} | "
        f"{m['bare_s']:.2f} | {m['network_s']:.2f} | {m['predict_s']:.2f} | {m['predict_s'] / m['bare_s']:.2f} | "
        f"{m['loaded_gib']:.2f} | {m['peak_gib']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--model", help="a registry URI or model folder (default: quickly trained --arch models)")
    parser.add_argument("--arch", nargs="+", default=["unet4", "smp-unet-resnet34"], help="models of params.yaml")
    parser.add_argument("--before", type=Path, help="an older tree's src folder, measured beside this one")
    parser.add_argument("--sides", type=int, nargs="+", default=list(SIDES))
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs up to 2048 px (larger: one)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a CPU shared with other work)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "predict_speed.md")
    args = parser.parse_args()
    codes = [("this tree", None)] + ([(f"before ({args.before})", args.before.resolve())] if args.before else [])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        models = {args.model: args.model} if args.model else {}
        for arch in [] if args.model else args.arch:
            models[f"{arch} ({QUICK_EPOCHS} epochs)"] = quick_model(args.params, arch, Path(tmp) / arch)
        images = demo_images(args.params, args.sides, Path(tmp))
        print(f"models and images: {time.perf_counter() - start:.0f} s", flush=True)
        rows = []
        for name, model in models.items():
            for side in args.sides:
                for tta in ("none", "d4") if side <= WITH_D4 else ("none",):
                    for code, src in codes:
                        repeat = args.repeat if side <= WITH_D4 else 1
                        result = _child(model, images[side], tta, repeat, args.threads, src)
                        rows.append(_row(name, code, side, tta, result))
                        print(rows[-1], flush=True)
    lines = [
        "# `ncseg predict`: seconds and memory per image\n",
        f"Command: `python -m benchmarks.predict_speed {' '.join(sys.argv[1:])}`, on {cpu_model()}, "
        f"{os.cpu_count()} cores, {args.threads} torch thread(s).\n",
        "Passes: forward calls per image over those of one bare probability (1 = each view once). Bare: the networks "
        "over the image's views once, calibrated. Network: the time in forward calls during predict. Predict: "
        "`ncseg.predict.run` whole (mask, labels, particle table, uncertainty, overlay, summary), model loaded "
        "before. Memory: resident once the model is loaded, and the peak while predicting.\n",
        "| model | code | image | tta | particles | passes | bare s | network s | predict s | predict / bare | "
        "loaded GiB | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--measure":
        model, image, tta, repeat, threads = sys.argv[2:]
        print(json.dumps(measure(model, Path(image), tta, int(repeat), int(threads))))
    else:
        main()
