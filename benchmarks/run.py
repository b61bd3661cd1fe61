"""Speed and memory of ncseg on this machine, measured side by side in one run -> benchmarks/results.md.

    python -m benchmarks.run            # everything (about 4 minutes on 2 cores)
    python -m benchmarks.run --no-serve # skip the served-model latency

Needs a trained project (`make repro`): the registered champion for the registered-model and serving figures.
Every figure is a median of repeated runs (5, or 15 for the ~0.1 s calls on 512² images); ratios are against
fp32 eager in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, ROOT, achievable_gflops, cpu_model, forward_flops, median_s, table
from ncseg.config import Params, load_params


def study_params() -> Params:
    return load_params(ROOT / "params.yaml")


def neural_models() -> list[str]:
    """The networks params.yaml trains, in its order (the classical baseline has no speed worth a table)."""
    return [name for name, spec in study_params().models.items() if spec.kind != "classical"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- training throughput and memory: one fresh process per model, so peak RSS is that model's alone -------------
def child_train(name: str, precision: str) -> dict:
    """fp32: plain eager steps; bf16: what `train.precision: bf16` runs (autocast, channels-last)."""
    from ncseg.inference.runtime import autocast
    from ncseg.models.zoo import build_net
    from ncseg.training.loop import segmentation_loss

    p = study_params()
    torch.manual_seed(0)
    net = build_net(p.model(name), 1)
    memory = torch.channels_last if precision == "bf16" else torch.contiguous_format
    net = net.to(memory_format=memory)
    crop = net.geometry.fit(p.train.crop_px)
    x = torch.rand(p.train.batch_size, 1, crop, crop).contiguous(memory_format=memory)
    y = torch.rand(p.train.batch_size, 1, crop - 2 * net.geometry.margin, crop - 2 * net.geometry.margin) > 0.8
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    criterion = segmentation_loss(p.train)
    before = peak_rss_mb()

    def step() -> None:
        with autocast(precision, x.device):
            logits = net(x)
        loss = criterion(logits.float(), y.float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    seconds = median_s(step, repeat=6, warmup=2)
    return {
        "model": name,
        "precision": precision,
        "crop": crop,
        "batch": p.train.batch_size,
        "crops_per_s": p.train.batch_size / seconds,
        "peak_mb": peak_rss_mb(),
        "train_extra_mb": peak_rss_mb() - before,
        "params_m": sum(q.numel() for q in net.parameters()) / 1e6,
    }


def training_table() -> list[dict]:
    rows = []
    for name in neural_models():
        for precision in ("fp32", "bf16"):
            command = [sys.executable, "-m", "benchmarks.run", "--child", name, "--precision", precision]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


# --- inference paths ------------------------------------------------------------------------------------------
def run_path(nets: list[torch.nn.Module], image: np.ndarray, path: str, tile: int, context: int) -> np.ndarray:
    from ncseg.inference.tiling import predict_proba

    precision = "bf16" if path.startswith("bf16") else "fp32"
    return predict_proba(nets, nets[0].geometry, image, tile=tile, context=context, batch_tiles=4, precision=precision)


def inference_table(images: dict[int, np.ndarray]) -> tuple[list[dict], list[dict]]:
    """ms per image for the first network of each kind (the custom U-Net, the first smp baseline) and path;
    FLOPs and achieved GFLOP/s for fp32 and bf16."""
    from ncseg.models.zoo import build_net

    p = study_params()
    rows, flops_rows = [], []
    first_of_kind = {p.model(name).kind: name for name in reversed(neural_models())}
    for name in first_of_kind.values():
        torch.manual_seed(0)
        net = build_net(p.model(name), 1).eval()
        flops = forward_flops(net, 1, 512)
        reference = {}
        for path in ("fp32", "bf16", "bf16+channels_last"):
            memory = torch.channels_last if path.endswith("channels_last") else torch.contiguous_format
            net = net.to(memory_format=memory)
            for size, image in images.items():
                seconds = median_s(lambda: run_path([net], image, path, p.inference.tile, p.inference.context))  # noqa: B023
                prob = run_path([net], image, path, p.inference.tile, p.inference.context)
                reference.setdefault(size, prob)
                agree = float(((prob > 0.5) == (reference[size] > 0.5)).mean())
                rows.append(
                    {
                        "model": name,
                        "path": path,
                        "size": size,
                        "ms": seconds * 1e3,
                        "max_abs_diff": float(np.abs(prob - reference[size]).max()),
                        "mask_agreement": agree,
                    }
                )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=path.startswith("bf16")), torch.no_grad():
                one_tile = median_s(lambda: net(torch.zeros(1, 1, 512, 512).to(memory_format=memory)))  # noqa: B023
            flops_rows.append(
                {"model": name, "path": path, "gflop_512": flops / 1e9, "gflop_per_s": flops / one_tile / 1e9}
            )
        net.to(memory_format=torch.contiguous_format)
    return rows, flops_rows


def scaling_rows(crops_per_s: float) -> list[dict]:
    """How one model's CV time grows with image count and size, from measured parts:
    per fold, epochs x (steps x batch / crops_per_s + inner-val inference) + test inference."""
    from ncseg.models.zoo import build_net

    p = study_params()
    net = build_net(p.model("unet4"), 1).eval().to(memory_format=torch.channels_last)  # as during training
    path = "bf16+channels_last" if p.inference.precision == "bf16" else "fp32"
    rng = np.random.default_rng(1)
    rows = []
    for size in (256, 512, 1024):
        image = rng.random((size, size), dtype=np.float32)
        infer_s = median_s(lambda: run_path([net], image, path, p.inference.tile, p.inference.context), repeat=3)  # noqa: B023
        for n_images in (22, 44, 88):
            k = p.cv.n_folds
            n_test = n_images / k
            n_val = (n_images - n_test) * p.cv.inner_val_fraction
            epoch_s = p.train.steps_per_epoch * p.train.batch_size / crops_per_s + n_val * infer_s
            fold_s = p.train.epochs * epoch_s + n_test * infer_s
            rows.append({"images": n_images, "size": size, "cv_min": k * fold_s / 60, "infer_s": infer_s})
    return rows


# --- the registered model, in process and served --------------------------------------------------------------
def child_registered(model_uri: str) -> list[dict]:
    import mlflow

    from ncseg.serving.protocol import encode_request

    model = mlflow.pyfunc.load_model(model_uri)
    rows = []
    for size, image in benchmark_images().items():
        request = encode_request([micrograph(image)])
        seconds = median_s(lambda: model.predict(request), repeat=repeats(size))  # noqa: B023
        rows.append({"size": size, "ms": seconds * 1e3})
    return rows


def registered_rows(model_uri: str) -> list[dict]:
    """In a fresh process, as the server is: a long-running benchmark process has warmer allocator and kernel
    caches, which made in-process look up to 20 % faster than the same call in any new process."""
    command = [sys.executable, "-m", "benchmarks.run", "--child-registered", "--model-uri", model_uri]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark_images() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {size: rng.random((size, size), dtype=np.float32) for size in (512, 2048)}


def repeats(size: int) -> int:
    """More repeats where one call takes ~0.1 s: there a few ms of scheduling noise would swamp the overhead."""
    return 15 if size <= 512 else 5


def micrograph(image: np.ndarray) -> np.ndarray:
    """A 16-bit detector image, as a microscope writes it."""
    return (image * 4000 + 1000).astype(np.uint16)


def served_rows(model_uri: str, images: dict[int, np.ndarray], in_process: list[dict]) -> list[dict]:
    from ncseg.serving.protocol import encode_request
    from ncseg.serving.server import local_server, server_env

    env = server_env(os.environ["MLFLOW_TRACKING_URI"])
    with Path(os.devnull).open("w") as log, local_server(model_uri, env, ROOT, log) as url:
        rows = []
        for (size, image), local in zip(images.items(), in_process, strict=True):
            request = encode_request([micrograph(image)])
            body = json.dumps({"dataframe_split": {"columns": ["image"], "data": request.to_numpy().tolist()}}).encode()
            request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
            seconds = median_s(lambda: urllib.request.urlopen(request, timeout=600).read(), repeat=repeats(size))  # noqa: B023
            rows.append(
                {
                    "size": size,
                    "served_ms": seconds * 1e3,
                    "in_process_ms": local["ms"],
                    "overhead": seconds * 1e3 / local["ms"] - 1,
                    "payload_mb": len(body) / 1e6,
                }
            )
        return rows


# --- report ---------------------------------------------------------------------------------------------------
def training_sections() -> tuple[list[str], list[dict]]:
    train = training_table()
    unet = next(r["crops_per_s"] for r in train if (r["model"], r["precision"]) == ("unet4", "bf16"))
    sections = [
        "## Training throughput (forward + backward, default crop and batch)\n\n"
        + table(
            train,
            {
                "model": "model",
                "precision": "precision",
                "params_m": "params (M)",
                "crop": "crop px",
                "batch": "batch",
                "crops_per_s": "crops/s",
                "peak_mb": "peak RSS (MB)",
                "train_extra_mb": "training extra (MB)",
            },
        ),
        "## How CV time grows (unet4, default params; computed from measured step and inference times)\n\n"
        "Training cost per epoch is fixed by `steps_per_epoch x batch_size` crops; what grows with the "
        "data is inference on inner-validation images every epoch and on test images once.\n\n"
        + table(
            scaling_rows(unet),
            {
                "images": "images",
                "size": "image px",
                "infer_s": "s / image (inference)",
                "cv_min": "5-fold CV (min, upper bound: no early stop)",
            },
        ),
    ]
    return sections, train


def inference_sections(images: dict[int, np.ndarray]) -> list[str]:
    ceiling = achievable_gflops()
    inference, flops = inference_table(images)
    for r in flops:
        r["of_ceiling"] = (
            f"{100 * r['gflop_per_s'] / ceiling['bf16' if r['path'].startswith('bf16') else 'fp32']:.0f} %"
        )
    return [
        "## Inference, one network (tiled as in production; median of 5)\n\n"
        + table(
            inference,
            {
                "model": "model",
                "path": "path",
                "size": "image px",
                "ms": "ms",
                "max_abs_diff": "max |Δp| vs fp32",
                "mask_agreement": "mask agreement",
            },
        ),
        f"## FLOPs and achieved throughput (one 512 x 512 forward)\n\nAchievable on this CPU (2048^3 "
        f"matmul): fp32 {ceiling['fp32']:.0f} GFLOP/s, bf16 {ceiling['bf16']:.0f} GFLOP/s.\n\n"
        + table(
            flops,
            {
                "model": "model",
                "path": "path",
                "gflop_512": "GFLOP / 512² image",
                "gflop_per_s": "GFLOP/s",
                "of_ceiling": "of achievable",
            },
        ),
    ]


def registered_sections(model_uri: str, images: dict[int, np.ndarray], serve: bool) -> list[str]:
    in_process = registered_rows(model_uri)
    sections = [
        f"## The registered model ({model_uri}, in process: a 16-bit TIFF in, the mask TIFF out)\n\n"
        + table(in_process, {"size": "image px", "ms": "ms per image"})
    ]
    if serve:
        sections.append(
            "## Served (`mlflow models serve`, base64 TIFF in JSON over loopback) vs in process\n\n"
            + table(
                served_rows(model_uri, images, in_process),
                {
                    "size": "image px",
                    "payload_mb": "request (MB)",
                    "served_ms": "served ms",
                    "in_process_ms": "in-process ms",
                    "overhead": "overhead",
                },
            )
        )
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child")
    parser.add_argument("--child-registered", action="store_true")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--model-uri", default=f"models:/{study_params().registry.model_name}@champion")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_train(args.child, args.precision)))
        return
    if args.child_registered:
        print(json.dumps(child_registered(args.model_uri)))
        return
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}")
    images = benchmark_images()
    header = (
        f"# Benchmarks\n\nMachine: {cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Command: `python -m benchmarks.run`.\n"
    )
    training, _ = training_sections()
    sections = [header, *training, *inference_sections(images)]
    sections += registered_sections(args.model_uri, images, serve=not args.no_serve)
    report = "\n\n".join(sections) + "\n"
    print(report)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
