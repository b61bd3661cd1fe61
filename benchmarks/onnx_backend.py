"""ONNX Runtime vs torch on the exported module (ncseg.export.bioimageio.ServedNetwork): is ORT worth a backend?

    python -m benchmarks.onnx_backend [--side 2048] [--repeat 5] [--out FILE]   -> benchmarks/onnx_backend.md

params.yaml's unet4 (untrained: the cost does not depend on the weights), served as `register` serves it, wrapped as
the BioImage.IO package wraps it and exported to ONNX the same way; one normalised `--side`² image through the whole
module in one pass (its own mirror padding), by torch in fp32 and in the precision `auto` gives this CPU, and by
ONNX Runtime (fp32, CPU provider, torch's thread count); torch both in its default memory format and
channels-last, the served model's (oneDNN's fast convolutions). Medians of `--repeat` after one warm-up, the
backends taken in turn. Agreement: the share of pixels whose mask (p > 0.5) is the same as torch fp32's; the
GFLOP/s achieved against this CPU's measured matrix-product rate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, achievable_gflops, cpu_model, forward_flops, write_report
from benchmarks.served_classes import served


def main() -> None:
    import onnxruntime

    from ncseg.export.bioimageio import module_of
    from ncseg.inference.runtime import autocast, effective_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "onnx_backend.md")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        model = served(Path(tmp) / "m", [])
        module = module_of(model.config, model.nets)
        x = torch.rand(1, 1, args.side, args.side)
        torch.onnx.export(
            module,
            (x[..., :256, :256],),
            f"{tmp}/m.onnx",
            input_names=["image"],
            output_names=["probability"],
            dynamic_axes={"image": {0: "b", 2: "y", 3: "x"}, "probability": {0: "b", 2: "y", 3: "x"}},
            opset_version=17,
            dynamo=False,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(f"{tmp}/m.onnx", options, providers=["CPUExecutionProvider"])
    auto = effective_precision("auto", torch.device("cpu"))

    served_layout = module_of(model.config, model.nets)
    served_layout.members = torch.nn.ModuleList(n.to(memory_format=torch.channels_last) for n in served_layout.members)

    def run_torch(net: torch.nn.Module, precision: str, layout: torch.memory_format) -> np.ndarray:
        with torch.no_grad(), autocast(precision, torch.device("cpu")):
            return net(x.contiguous(memory_format=layout)).float().numpy()

    cases = {
        "torch fp32": lambda: run_torch(module, "fp32", torch.contiguous_format),
        "torch fp32, channels-last (as served)": lambda: run_torch(served_layout, "fp32", torch.channels_last),
        "onnxruntime fp32": lambda: session.run(None, {"image": x.numpy()})[0],
    }
    if auto != "fp32":
        cases[f"torch {auto}, channels-last (auto, as served)"] = lambda: run_torch(
            served_layout, auto, torch.channels_last
        )
    answers = {name: call() for name, call in cases.items()}  # the warm-up, and what is compared
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, call in cases.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    flops = forward_flops(module.members[0], 1, args.side + 2 * module.pad)
    peak = achievable_gflops()
    reference = answers["torch fp32"] > 0.5
    rows = []
    for name, answer in answers.items():
        median = statistics.median(seconds[name])
        agree = float(np.mean((answer > 0.5) == reference))
        rate = flops / median / 1e9
        rows.append(
            f"| {name} | {median:.2f} | {median / statistics.median(seconds['torch fp32']):.2f} | "
            f"{agree * 100:.3f} % | {rate:.0f} | {rate / peak['fp32'] * 100:.0f} % | "
            + (f"{rate / peak['bf16'] * 100:.0f} % |" if auto == "bf16" else "— (no bf16 instructions) |")
        )
        print(rows[-1], flush=True)
    how = (
        f"Command: `python -m benchmarks.onnx_backend`, on {cpu_model()}, {threads} threads, one run; one {args.side}² "
        f"image through params.yaml's unet4 (untrained) as exported, in one pass; medians of {args.repeat}, the "
        f"backends in turn. Matrix-product rate of this CPU: {peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} "
        f"bf16; the forward pass is {flops / 1e9:.0f} GFLOP."
    )
    header = [
        "| backend | s | / torch fp32 | mask agreement with torch fp32 | GFLOP/s | of fp32 matmul | of bf16 matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    write_report(args.out, "ONNX Runtime vs torch on the exported module", how, [*header, *rows])


if __name__ == "__main__":
    main()
