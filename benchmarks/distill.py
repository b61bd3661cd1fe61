"""Distillation: does one student network reach its ensemble + TTA teacher? CV Jaccard and seconds, honestly:

    python -m benchmarks.distill [-p PARAMS] [-m MODEL] [--members R] [--tta d4] [--out FILE]

For each fold k of the study's split (repeat 0), R networks are trained on fold k's fit/validation split with the
seeds repeat r would use (`cv.seed(seed, r) + k`; member 0 is exactly the network CV trains for fold k). They are the
teacher: their mean, with test-time augmentation. The student, same architecture and seed as member 0, is fitted on
the teacher's probabilities of the fit images (benchmarks.distillation). Nothing here saw fold k's test images,
which are scored with the temperature and threshold chosen on the other folds (as CV does). Gains are fold-paired
with the corrected resampled t-interval. Seconds: one 2048 x 2048 image, median of 3, on this machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, cpu_model, cv_jaccard_per_fold, median_s
from benchmarks.distillation import distill, seed_ensemble
from ncseg.config import load_params
from ncseg.data.dataset import load_samples
from ncseg.inference.tta import predict_tta
from ncseg.training.plan import fit_and_validation, plan_repeats
from ncseg.training.report import fold_paired_gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("-m", "--model", default="unet4")
    parser.add_argument("-S", "--set", action="append", default=[], help="override a parameter, as for ncseg")
    parser.add_argument("--members", type=int, default=3, help="teacher networks per fold")
    parser.add_argument("--tta", choices=["none", "flip", "d4"], default="d4", help="the teacher's TTA")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(args.params.resolve(), [*args.set, "cv.repeats=1"])
    spec = params.model(args.model)
    torch.set_num_threads(os.cpu_count() or 1)
    samples, _ = load_samples(params.paths.augmented, params.inference)
    (split,) = plan_repeats(samples, params)
    tiling, probs = params.inference.tiling(), {"single net": {}, "teacher": {}, "student": {}}
    one_image = np.random.default_rng(0).uniform(0, 1, (len(params.inference.normalization), 2048, 2048))
    one_image = one_image.astype(np.float32)
    start = time.perf_counter()
    for k in range(params.cv.n_folds):
        fit, val, _ = fit_and_validation(samples, split.folds, k, params.cv.inner_val_fraction, split.seed)
        seeds = [params.cv.seed(params.seed, r) + k for r in range(args.members)]
        teacher = seed_ensemble(spec, fit, val, params, seeds)
        student = distill(spec, teacher, fit, val, params, seeds[0], args.tta)
        for i in split.test(k):
            image = samples[i].image
            probs["single net"][i] = predict_tta(teacher[:1], student.geometry, image, "none", **tiling)
            probs["teacher"][i] = predict_tta(teacher, student.geometry, image, args.tta, **tiling)
            probs["student"][i] = predict_tta([student], student.geometry, image, "none", **tiling)
        print(f"fold {k}: {time.perf_counter() - start:.0f} s", flush=True)
    nets = {"single net": (teacher[:1], "none"), "teacher": (teacher, args.tta), "student": ([student], "none")}
    per_fold = {name: cv_jaccard_per_fold(params, probs[name], samples, split) for name in probs}
    rows = [
        "| network | CV Jaccard | Δ vs single net (95 % interval) | Δ vs teacher (95 % interval) | s per 2048² |",
        "|---|---|---|---|---|",
    ]
    for name, (used, tta) in nets.items():
        seconds = median_s(lambda: predict_tta(used, used[0].geometry, one_image, tta, **tiling), repeat=3)  # noqa: B023
        cells = [f"{np.mean(per_fold[name]):.4f} ± {np.std(per_fold[name], ddof=1):.4f}"]
        for base in ("single net", "teacher"):
            g = fold_paired_gain(name, per_fold[name], base, per_fold[base], params.cv.n_folds)
            cells.append("—" if base == name else f"{g.gain_mean:+.4f} [{g.ci_low:+.4f}, {g.ci_high:+.4f}]")
        rows.append(f"| {name} | {' | '.join(cells)} | {seconds:.2f} |")
    text = (
        f"## Distillation: {args.model} ({args.params}, {params.cv.n_folds} folds), teacher = {args.members} "
        f"networks + TTA {args.tta}\n\n"
        f"Command: `python -m benchmarks.distill -p {args.params} -m {args.model} --members {args.members} --tta "
        f"{args.tta}` on {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"{(time.perf_counter() - start) / 60:.0f} min in all.\n\n" + "\n".join(rows) + "\n"
    )
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
