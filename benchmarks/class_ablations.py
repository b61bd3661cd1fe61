"""One-change ablations of a K-class study's network, each compared class by class and fold-paired with the study's
own repeats:

    python -m benchmarks.class_ablations -p PARAMS [-m MODEL] [--out FILE] [NAME ...]
    (default: every ablation below)

A variant is `ncseg train -p PARAMS -S cv.repeats=1 <its change> MODEL` (its change may set more repeats) with
its models, metrics and plots under <study>/ablations/NAME/ (ignored by git): trained here unless that folder
already holds a CV summary made with the same params (`benchmarks.ablations.result`). The baseline is the study's
committed CV itself, its first R x K folds for a variant of R repeats: repeat r always runs on `cv.seed(seed, r)`
whatever `cv.repeats` is (`ncseg.training.plan.plan_repeats`), so a variant's repeat r has the study's repeat r
split, inner validation, initial draw and batches wherever its change leaves them alone, and the gain is measured
on identical test images with CV's corrected interval. The study's repeats put the run-to-run noise of a 5-fold
mean at about ±0.01 (benchmarks/class_repeats_pt_alumina.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
from pathlib import Path

import torch

from benchmarks.ablations import result
from benchmarks.common import ROOT, cpu_model, write_report
from ncseg.config import Params, load_params
from ncseg.records import CVSummary
from ncseg.training.report import fold_paired_gain

ABLATIONS: dict[str, tuple[str, list[str]]] = {  # name: (what changes, -S assignments; {model}: the one ablated)
    "crop256": (
        "256 px crops, batch 3 (study: 160 px, batch 8): 2.6x the context per crop, about the same pixels per step",
        ["train.crop_px=256", "train.batch_size=3"],
    ),
    "depth5": ("five pooling levels instead of four (receptive field x2)", ["models.{model}.depth=5"]),
    "ce_w4": ("Pt weight 4 in the cross-entropy (study: 2)", ["train.class_weights=[1.0, 1.0, 4.0]"]),
    "ce_w1": ("no class weights (Pt weight 1)", ["train.class_weights=[1.0, 1.0, 1.0]"]),
    "dataset_view": ("the dataset view alone (study: dataset + per-image view)", ["inference.normalization=[dataset]"]),
    "epochs80": (
        "twice the steps: 80 epochs, every one run (study: 40; its best inner-validation epochs were the 20th-40th)",
        ["train.epochs=80", "train.patience=80"],
    ),
    "epochs160": (
        "four times the steps: 160 epochs, every one run (the support rose with twice the steps and with the published "
        "network's longer schedule)",
        ["train.epochs=160", "train.patience=160"],
    ),
    "epochs320": (
        "eight times the steps: 320 epochs, every one run (the support rose by about 0.009 per doubling, 40 -> 160): "
        "does it keep rising toward 0.93, or level off near the expert's own agreement between neighbouring slices?",
        ["train.epochs=320", "train.patience=320"],
    ),
    "epochs160_x3": (
        "four times the steps, three repeats: the support's lead above the noise, paired with the study's 15 folds "
        "(repeat 0 is epochs160's, from the fold cache)",
        ["train.epochs=160", "train.patience=160", "cv.repeats=3"],
    ),
    "rerun": (
        "no change: the study's settings trained again, here on another CPU kind than its committed CV (what the "
        "CPU's bf16 rounding alone moves)",
        [],
    ),
    "focal_dice": (
        "focal + Dice instead of cross-entropy + Dice (gamma: the study's train.focal_gamma, 2; the Pt weight 2 kept)",
        ["train.loss=focal_dice"],
    ),
    "lovasz": (
        "cross-entropy + Lovasz-softmax instead of cross-entropy + Dice (smp's: one Jaccard surrogate per class present"
        " in a batch): does optimising the score itself move the Pt?",
        ["train.loss=bce_lovasz"],
    ),
    "dataset_view_x3": (
        "the dataset view alone, three repeats: the one lead above the noise, paired with the study's 15 folds",
        ["inference.normalization=[dataset]", "cv.repeats=3"],
    ),
}


def variant(params_file: Path, model: str, name: str) -> Params:
    out = params_file.parent / "ablations" / name
    folders = [f"paths.{key}={out}/{key}" for key in ("models", "metrics", "plots")]
    return load_params(params_file, ["cv.repeats=1", *assignments(name, model), *folders])


def assignments(name: str, model: str) -> list[str]:
    return [a.format(model=model) for a in ABLATIONS[name][1]]


def as_options(name: str, model: str) -> str:
    """The change as ncseg options, in backquotes; `rerun` has none."""
    options = " ".join(f"-S {shlex.quote(a)}" for a in assignments(name, model))
    return f"`{options}`" if options else "no options"


def rows(study: CVSummary, trained: dict[str, tuple[CVSummary, float]], classes: list[str]) -> list[str]:
    """The table: each class's Jaccard over the study's first R x K folds for every R a variant runs, then each
    variant's with its gain paired with the study's same folds."""
    k = study.n_folds
    head = "| variant | " + " | ".join(f"{c} Jaccard | Δ {c} [95 %], folds better" for c in classes)
    rule = "|---|" + "---|---|" * len(classes) + "---|---|---|"
    lines = [head + " | particle F1 | material Jaccard | train min |", rule]

    def base(c: str, n: int = k) -> list[float]:
        return list(study.class_jaccard_per_fold[c][:n])

    def cells(per_fold: dict[str, tuple[float, ...]] | None = None, n: int = k) -> str:
        """Each class's mean ± std over folds and, for a variant (`per_fold`), its gain paired with the study's;
        the study's own over its first `n` folds."""
        out = []
        for c in classes:
            s, gain = list(per_fold[c]) if per_fold else base(c, n), "—"
            if per_fold:
                g = fold_paired_gain(c, s, "study", base(c, len(s)), k)
                gain = f"{g.gain_mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}], {g.folds_better} of {len(s)}"
            out.append(f"{statistics.mean(s):.3f} ± {statistics.stdev(s):.3f} | {gain}")
        return " | ".join(out)

    for r in sorted({1} | {summary.repeats for summary, _ in trained.values()}):
        which = "repeat 0" if r == 1 else f"repeats 0–{r - 1}"
        lines.append(f"| study, {which} | {cells(n=r * k)} | — | — | — |")
    for name, (summary, minutes) in trained.items():
        f1 = " / ".join(f"{v['object_f1_mean']:.3f}" for v in summary.classes.values() if "object_f1_mean" in v)
        material = f"{summary.material_jaccard_mean:.3f}" if summary.material_jaccard_mean is not None else "—"
        lines.append(f"| {name} | {cells(summary.class_jaccard_per_fold)} | {f1} | {material} | {minutes:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "studies" / "pt-alumina-classes" / "params.yaml")
    parser.add_argument("-m", "--model", default="unet4")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "class_ablations_pt_alumina.md")
    parser.add_argument("names", nargs="*", help=f"ablations to run (default: all): {', '.join(ABLATIONS)}")
    args = parser.parse_args()
    if unknown := [n for n in args.names if n not in ABLATIONS]:
        parser.error(f"unknown ablation {', '.join(unknown)}; known: {', '.join(ABLATIONS)}")
    params_file = args.params.resolve()
    base = load_params(params_file)
    study_file = base.paths.metrics / "cv" / f"{args.model}.json"
    if not study_file.is_file():
        parser.error(f"{study_file}: no CV summary of the study's {args.model} to compare with (ncseg train first)")
    study = CVSummary.load(study_file)
    if not study.class_jaccard_per_fold:
        parser.error(f"{study_file}: no per-class Jaccard per fold (not a K-class study, or scored before it)")
    torch.set_num_threads(os.cpu_count() or 1)
    names = args.names or list(ABLATIONS)
    variants = {name: variant(params_file, args.model, name) for name in names}
    if beyond := [n for n, v in variants.items() if v.cv.repeats > study.repeats]:
        parser.error(f"{', '.join(beyond)}: more repeats than {study_file} ({study.repeats}) to pair them with")
    trained = {name: result(v, args.model) for name, v in variants.items()}
    classes = list(study.class_jaccard_per_fold)
    how = (
        f"Command: `python -m benchmarks.class_ablations -p {params_file.relative_to(ROOT)} -m {args.model} "
        f"{' '.join(shlex.quote(n) for n in args.names)}`, on {cpu_model()}, {os.cpu_count()} cores. One repeat of "
        f"{study.n_folds} folds each unless named otherwise, against the study's same repeats (same splits and "
        "seeds); Δ fold-paired with CV's corrected 95 % interval. Particle F1: each particle class's object F1. "
        "Material: every foreground class as one mask (the study's: `python -m benchmarks.class_repeats`). Train "
        "minutes: wall time, each variant alone on the machine; folds a variant shares with another (the same "
        "change, more repeats) come from the fold cache and cost nothing."
    )
    changes = [f"- **{name}**: {ABLATIONS[name][0]} ({as_options(name, args.model)})" for name in names]
    title = f"One-change ablations of {args.model} on {params_file.relative_to(ROOT)}, class by class"
    write_report(args.out, title, how, [*changes, "", *rows(study, trained, classes)])


if __name__ == "__main__":
    main()
