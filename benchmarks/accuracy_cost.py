"""What accuracy costs: one network, + TTA, the R-network ensemble, ensemble + TTA — CV Jaccard and seconds.

    python -m benchmarks.accuracy_cost -p params.yaml -m smp-unet-resnet18 --out benchmarks/accuracy_cost.md

Needs a model folder trained with `cv.repeats` >= 2 (each image then has R networks, one per repeat, that never
saw it). Every configuration is scored the way CV scores a model: on repeat 0's folds, out of fold, with the
temperature and threshold of each fold chosen on the other folds. The seconds are for one 2048 x 2048 image on
this machine (median of 3), beside the CPU's bf16 and fp32 matmul rates measured in the same run, and the share of
the bf16 rate the network's convolutions reach.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    achievable_gflops,
    cpu_model,
    cv_jaccard_per_fold,
    cv_networks,
    forward_flops,
    median_s,
    table,
)
from ncseg.config import load_params
from ncseg.data.dataset import load_samples
from ncseg.inference.tta import predict_tta
from ncseg.records import ModelCard
from ncseg.training.plan import plan_repeats

CONFIGS = {  # name: (networks per fold-free image: "one" or "all" repeats, tta)
    "single net": ("one", "none"),
    "single net + TTA (d4)": ("one", "d4"),
    "R-net ensemble": ("all", "none"),
    "R-net ensemble + TTA (d4)": ("all", "d4"),
}


def oof_probabilities(params, nets, samples, repeats) -> dict[str, dict[int, np.ndarray]]:
    """Each configuration's out-of-fold probability per image: only networks whose fold held the image out."""
    tiling, out = params.inference.tiling(), {}
    for name, (members, tta) in CONFIGS.items():
        used = repeats[:1] if members == "one" else repeats
        out[name] = {
            i: np.mean(
                [
                    predict_tta([nets[(rep.index, rep.folds[i])]], nets[(0, 0)].geometry, s.image, tta, **tiling)
                    for rep in used
                ],
                axis=0,
            )
            for i, s in enumerate(samples)
        }
    return out


def cv_jaccard(params, probs, samples, repeat0) -> tuple[float, float]:
    per_fold = cv_jaccard_per_fold(params, probs, samples, repeat0)
    return float(np.mean(per_fold)), float(np.std(per_fold, ddof=1))


def seconds_2048(params, nets, repeats) -> dict[str, float]:
    image = np.random.default_rng(0).uniform(0, 1, (len(params.inference.normalization), 2048, 2048)).astype(np.float32)
    out = {}
    for name, (members, tta) in CONFIGS.items():
        used = [
            nets[(rep.index, 0)].to(memory_format=torch.channels_last)
            for rep in (repeats[:1] if members == "one" else repeats)
        ]
        out[name] = median_s(
            lambda: predict_tta(used, used[0].geometry, image, tta, **params.inference.tiling()),  # noqa: B023
            repeat=3,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-S", "--set", action="append", default=[], help="override a parameter, as for ncseg")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(args.params, args.set)
    model_dir = params.paths.models / args.model
    card = ModelCard.load(model_dir / ModelCard.FILE)
    if card.repeats < 2:
        raise SystemExit(f"{model_dir}: trained with cv.repeats = 1; the ensemble rows need >= 2 (-S cv.repeats=3)")
    if card.repeats != params.cv.repeats:
        raise SystemExit(f"{model_dir}: {card.repeats} repeats, params say {params.cv.repeats}: pass -S cv.repeats")
    torch.set_num_threads(os.cpu_count() or 1)
    samples, _ = load_samples(params.paths.augmented, params.inference)
    repeats, nets = plan_repeats(samples, params), cv_networks(model_dir)
    probs = oof_probabilities(params, nets, samples, repeats)
    ceiling, seconds = achievable_gflops(), seconds_2048(params, nets, repeats)
    flops = forward_flops(nets[(0, 0)], len(params.inference.normalization), 2048)
    rows = []
    for name, (members, tta) in CONFIGS.items():
        mean, std = cv_jaccard(params, probs[name], samples, repeats[0])
        passes = (len(repeats) if members == "all" else 1) * (8 if tta == "d4" else 1)
        rows.append(
            {
                "config": name,
                "jaccard": f"{mean:.4f} ± {std:.4f}",
                "passes": passes,
                "seconds": seconds[name],
                "vs_single": seconds[name] / seconds["single net"],
                "bf16_share": f"{100 * passes * flops / seconds[name] / 1e9 / ceiling['bf16']:.0f} %",
            }
        )
    text = (
        f"## Accuracy vs cost: {args.model} ({args.params}, {card.repeats} repeats x {params.cv.n_folds} folds)\n\n"
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, inference precision "
        f"{params.inference.precision}. Matmul ceiling in this run: bf16 {ceiling['bf16']:.0f} GFLOP/s, fp32 "
        f"{ceiling['fp32']:.0f} GFLOP/s. One forward pass of a 2048² image: {flops / 1e9:.0f} GFLOP.\n\n"
        + table(
            rows,
            {
                "config": "configuration",
                "jaccard": "CV Jaccard (repeat-0 folds, nested)",
                "passes": "forward passes",
                "seconds": "s / 2048² image",
                "vs_single": "× single",
                "bf16_share": "share of bf16 matmul rate",
            },
        )
        + "\n\nDistilled student: `python -m benchmarks.distill` (its own file); its single net is this table's, "
        "trained alike (member 0 = repeat 0's network of each fold).\n"
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
