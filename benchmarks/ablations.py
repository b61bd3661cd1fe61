"""Recipe ablations for one network, each a fold-paired gain over a baseline variant with its interval:

    python -m benchmarks.ablations [-p PARAMS] [-m MODEL] [--baseline NAME] [--out FILE] [NAME ...]
    (default: every ablation against "study recipe", the params file as it is)

Every variant trains the same CV (same seed: same split, same inner validation, same initial draw where the
architecture allows it, same batches) with one change, so the gain is measured on identical test images. The
interval is the corrected resampled t-interval `ncseg evaluate` uses (ncseg.training.report.paired_gain). With
K folds its width is set mostly by the 1/(K-1) correction, so repeats would narrow it little: one repeat each.

Trained variants land under <study>/ablations/<name>/ (ignored by git) and as MLflow runs in the experiment
`<tracking.experiment>-ablations`. A variant is reused where it was trained with the same params (paths and
tracking aside; `metrics/params.json` records them) and retrained where the study file has changed since. The
data and the code are not part of that key: delete a variant's folder after changing either.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import ROOT, cpu_model
from ncseg.config import Params, load_params
from ncseg.data.layout import CLASSES
from ncseg.records import CVSummary
from ncseg.tracking.store import project_root
from ncseg.training.cv import cross_validate
from ncseg.training.report import paired_gain
from ncseg.training.resume import DONE

Overrides = Callable[[str, Params], list[str]]  # (model name, study params) -> -S assignments
ABLATIONS: dict[str, tuple[str, Overrides]] = {  # name: (what changes, how)
    "study recipe": ("the study params as they are", lambda m, p: []),
    "focal + Dice": ("loss: focal (γ 2) + Dice instead of BCE + Dice", lambda m, p: ["train.loss=focal_dice"]),
    "BCE + Lovász": ("loss: BCE + Lovász hinge instead of BCE + Dice", lambda m, p: ["train.loss=bce_lovasz"]),
    "BatchNorm": ("BatchNorm after each conv (batch 8)", lambda m, p: [f"models.{m}.norm=batch"]),
    "GroupNorm": ("GroupNorm (8 groups) after each conv", lambda m, p: [f"models.{m}.norm=group"]),
    "cosine lr": ("cosine decay of the learning rate over the planned steps", lambda m, p: ["train.schedule=cosine"]),
    "one-cycle lr": ("one-cycle learning rate (warm-up, then anneal)", lambda m, p: ["train.schedule=onecycle"]),
    "no early stop": (
        "patience = epochs: every planned epoch runs, the best inner-validation epoch is kept",
        lambda m, p: [f"train.patience={p.train.epochs}"],
    ),
    "2x schedule": (
        "twice the epochs (early stopping still applies)",
        lambda m, p: [f"train.epochs={2 * p.train.epochs}"],
    ),
    "base 32": ("32 base channels instead of 16 (4x the FLOPs)", lambda m, p: [f"models.{m}.base_channels=32"]),
    "256-px crops": ("256-px training crops instead of the study's", lambda m, p: ["train.crop_px=256"]),
    "aux 3-class head": (
        "a training-only head learns background / support / Pt from classes/ (CE + Dice, weight 0.5 set a priori)",
        lambda m, p: [f"models.{m}.aux_classes=3", f"models.{m}.aux_weight=0.5"],
    ),
}


def variant(params_file: Path, model: str, name: str, base: Params) -> Params:
    slug = re.sub(r"[^a-z0-9]+", "-", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower())
    out = params_file.parent / "ablations" / slug
    return load_params(
        params_file,
        [
            f"paths={{raw: {base.paths.raw}, augmented: {base.paths.augmented}, models: {out}/models, "
            f"metrics: {out}/metrics, plots: {out}/plots}}",
            "cv.repeats=1",
            f"tracking.experiment={base.tracking.experiment}-ablations",
            f"models={{{model}: {base.model(model).model_dump_json()}}}",
            *ABLATIONS[name][1](model, base),
        ],
    )


def result(params: Params, model: str) -> tuple[CVSummary, float]:
    """The variant's CV summary, running its CV first if it has none or ran with other params (the study file
    changed since); and the minutes its training took. A CV that takes every fold from the fold cache trains
    nothing, so the minutes of the call that trained them stay."""
    metrics, minutes = params.paths.metrics / "cv" / f"{model}.json", params.paths.metrics / "train_minutes.txt"
    trained_with, key = params.paths.metrics / "params.json", params.model_dump_json(exclude={"paths", "tracking"})
    if not metrics.is_file() or not trained_with.is_file() or trained_with.read_text() != key:
        cached, start = cached_folds(params, model), time.perf_counter()
        cross_validate(model, params, project_root(ROOT))
        if cached_folds(params, model) > cached or not minutes.is_file():
            minutes.write_text(f"{(time.perf_counter() - start) / 60:.1f}\n")
        trained_with.write_text(key)
    return CVSummary.load(metrics), float(minutes.read_text()) if minutes.is_file() else float("nan")


def cached_folds(params: Params, model: str) -> int:
    """The finished folds in the model's fold cache, whatever their settings (`ncseg.training.resume`)."""
    root = params.paths.fold_cache
    return 0 if root is None else len(list((root / model).glob(f"*/*/{DONE}")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "studies" / "pt-alumina" / "params.yaml")
    parser.add_argument("-m", "--model", default="unet4")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ablations_pt_alumina.md")
    parser.add_argument("--baseline", default="study recipe", help="the variant every gain is measured against")
    parser.add_argument("names", nargs="*", help=f"ablations to run (default: all): {', '.join(ABLATIONS)}")
    args = parser.parse_args()
    if unknown := [n for n in [*args.names, args.baseline] if n not in ABLATIONS]:
        parser.error(f"unknown ablation {', '.join(unknown)}; known: {', '.join(ABLATIONS)}")
    params_file = args.params.resolve()
    base = load_params(params_file)
    if "aux 3-class head" in (args.names or ABLATIONS) and not (base.paths.augmented / CLASSES).is_dir():
        parser.error(f"{base.paths.augmented / CLASSES}: no class maps for the aux head (data import --classes)")
    torch.set_num_threads(os.cpu_count() or 1)
    names = [args.baseline, *[n for n in args.names or ABLATIONS if n != args.baseline]]
    trained = {}
    for name in names:
        trained[name] = result(variant(params_file, args.model, name, base), args.model)
        print(f"{name}: CV Jaccard {trained[name][0].jaccard_mean:.4f}", flush=True)
    baseline = trained[args.baseline][0]
    lines = [
        f"## Recipe ablations: {args.model} on {params_file.relative_to(ROOT)} (1 repeat x {base.cv.n_folds} folds)\n",
        f"Command: `python -m benchmarks.ablations -p {params_file.relative_to(ROOT)} -m {args.model} --baseline "
        f"{shlex.quote(args.baseline)} {' '.join(shlex.quote(n) for n in args.names)}`, on "
        f"{cpu_model()}, {os.cpu_count()} cores. Gains are fold-paired on identical test images; the interval is "
        "the corrected resampled t-interval (95 %). Training minutes are wall time on this machine, inflated where "
        "another job shared the 2 cores.\n",
        f"| variant | change | CV Jaccard | Δ vs {args.baseline} | 95 % interval | folds better | beyond noise | "
        "train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        summary, minutes = trained[name]
        row = f"| {name} | {ABLATIONS[name][0]} | {summary.jaccard_mean:.4f} ± {summary.jaccard_std:.4f} |"
        if name == args.baseline:
            lines.append(f"{row} — | — | — | — | {minutes:.1f} |")
        else:
            g = paired_gain(summary, baseline)
            verdict = "yes" if g.beyond_noise else "no"
            lines.append(
                f"{row} {g.gain_mean:+.4f} | [{g.ci_low:+.4f}, {g.ci_high:+.4f}] | {g.folds_better} of {g.folds} | "
                f"{verdict} | {minutes:.1f} |"
            )
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
