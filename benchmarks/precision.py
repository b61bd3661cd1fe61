"""bf16 against fp32 on this machine, for what `precision: auto` decides: a training step of the study's U-Net and a
whole-image prediction, each in both precisions, in one run.

    python -m benchmarks.precision   -> benchmarks/precision.md (~2 min on 2 cores)

Where the CPU has bf16 kernels (AVX-512 BF16, AMX) bf16 is the faster; where it has none, torch emulates bf16
convolutions by reference kernels and a training step takes many times fp32's: `auto` picks fp32 there.
"""

from __future__ import annotations

import torch

from benchmarks.common import ROOT, achievable_gflops, cpu_model, median_s, table
from ncseg.config import load_params
from ncseg.inference.runtime import autocast, native_bf16
from ncseg.inference.tiling import predict_proba
from ncseg.models.zoo import build_net

OUT = ROOT / "benchmarks" / "precision.md"


def train_step_s(precision: str, batch: int, crop: int, channels: int) -> float:
    """Median seconds of one optimiser step of the demo's unet4 on a batch of crops, as training runs it."""
    torch.manual_seed(0)
    net = build_net(load_params(ROOT / "params.yaml").models["unet4"], channels).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, channels, crop, crop).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, crop, crop) > 0.5).float()

    def step() -> None:
        with autocast(precision, torch.device("cpu")):
            logits = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return median_s(step, repeat=3)


def predict_s(precision: str, side: int) -> float:
    torch.manual_seed(0)
    net = build_net(load_params(ROOT / "params.yaml").models["unet4"], 1).eval().to(memory_format=torch.channels_last)
    image = torch.rand(side, side).numpy()
    return median_s(
        lambda: predict_proba([net], net.geometry, image, tile=1088, context=32, batch_tiles=4, precision=precision),
        repeat=3,
    )


def main() -> None:
    cpu, native = cpu_model(), native_bf16(torch.device("cpu"))
    rows = []
    for what, fn in (
        ("train step, 8 x 128² (demo)", lambda p: train_step_s(p, 8, 128, 1)),
        ("train step, 8 x 160² x 2 views (pt-alumina)", lambda p: train_step_s(p, 8, 160, 2)),
        ("predict 1024², tta none", lambda p: predict_s(p, 1024)),
    ):
        fp32, bf16 = fn("fp32"), fn("bf16")
        rows.append({"what": what, "fp32": fp32, "bf16": bf16, "ratio": bf16 / fp32})
        print(rows[-1], flush=True)
    gflops = achievable_gflops()
    text = "\n".join(
        [
            "# bf16 vs fp32 on this machine (`python -m benchmarks.precision`)",
            "",
            f"CPU: {cpu}, {torch.get_num_threads()} torch threads; oneDNN bf16 kernels: {native}"
            f" (so `precision: auto` runs {'bf16' if native else 'fp32'} here); 2048² matmul "
            f"{gflops['fp32']:.0f} GFLOP/s fp32, {gflops['bf16']:.0f} GFLOP/s bf16. Medians of 3, after a warm-up.",
            "",
            table(rows, {"what": "what", "fp32": "fp32 s", "bf16": "bf16 s", "ratio": "bf16 / fp32"}),
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
