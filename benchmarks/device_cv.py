"""One model's cross-validation on a GPU machine, for the schedules a study names as its GPU profile, and how it
compares with the study's own models on the same folds:

    python -m benchmarks.device_cv -p PARAMS -m MODEL [-S KEY=VALUE ...] [--processes N] [--minutes M] [--out DIR]
    python -m benchmarks.device_cv -p PARAMS -m MODEL [-S KEY=VALUE ...] --compare [--baselines NAME ...]

Training: N processes fill the study's fold cache at once (`ncseg.training.cv.fill_fold_cache`: a batch of two
512 px crops uses a fraction of a large GPU), process i taking folds i, i+N, … of the repeat-major plan, so the
first repeat finishes first. A process starts another fold only while the one it finished last would still end
within M minutes of the start. Then the CV runs as `ncseg train MODEL` runs it, taking every fold from the cache, on
the repeats whose folds all finished (`cv.repeats` lowered to that: no fold's key depends on it); a second call on
the same machine trains the rest. The summary lands where `ncseg train` writes it (the profile's paths.metrics/cv),
with device.json beside it (the machine; per call, each fold's seconds; a call that continues the folds an earlier
one left in the cache adds itself to that record); both also copied to DIR, to fetch them.

The machine this is for has no MLflow and can't install it: the tracking calls become no-ops there (they change
no number; the summary is what `ncseg train` writes). Run here, with MLflow, it tracks as `ncseg train` does.

--compare (no training): the kept summary beside the study's `--baselines` (its committed CVs, on the same splits
and seeds) with fold-paired gains -> benchmarks/device_cv_pt_alumina.md (or --out FILE).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.common import ROOT, cpu_model, write_report
from ncseg.config import load_params
from ncseg.inference.runtime import effective_precision, pick_device
from ncseg.io.tables import write_json
from ncseg.records import CVSummary
from ncseg.training.cv import cached_repeats, cross_validate, fill_fold_cache, plan_cv
from ncseg.training.report import fold_paired_gain

DEVICE = "device.json"  # the machine, its processes, each call's fold seconds
CACHED = -1  # a fold a call found in the cache


# What cross_validate logs through: each a no-op where MLflow is missing (a new call fails loudly, not silently).
LOGGED = (
    "log_training_data",
    "log_runtime",
    "log_split_groups",
    "log_cv_outcome",
    "log_fold_params",
    "log_weights",
    "log_epoch",
)


def untracked() -> None:
    """Where MLflow is missing, `ncseg.tracking.runs` as a module of no-ops (cross_validate logs through it)."""
    if importlib.util.find_spec("mlflow") is not None:
        return

    @contextmanager
    def run(*_: object, **__: object) -> Iterator[str]:
        yield "untracked"  # the model card's run id: no MLflow run

    def nothing(*_: object, **__: object) -> None:
        """Logs nothing."""

    stub = types.ModuleType("ncseg.tracking.runs", "MLflow is not installed here: nothing is logged")
    stub.parent_run, stub.child_run = run, run
    for name in LOGGED:
        setattr(stub, name, nothing)
    sys.modules[stub.__name__] = stub
    import ncseg.tracking

    ncseg.tracking.runs = stub


def worker(params_file: Path, model: str, overrides: list[str], share: int, of: int, until: float) -> dict[str, int]:
    """One process's share of the folds. Its first fold always starts; another only while the last one's time
    still fits before `until`. Returns the seconds of each fold it trained, and -1 for each it found cached."""
    torch.set_num_threads(max(1, multiprocessing.cpu_count() // of))
    run, _, _ = plan_cv(model, load_params(params_file, overrides))
    plan = [(r, k) for r in range(len(run.repeats)) for k in range(run.params.cv.n_folds)][share::of]
    seconds: dict[str, int] = {}
    last = 0
    with tempfile.TemporaryDirectory() as scratch:
        for index, k in plan:
            if time.time() + last > until:
                break
            trained = fill_fold_cache(run, [(index, k)], Path(scratch))
            last = trained[0] if trained else last
            seconds[f"r{index}-f{k}"] = last if trained else CACHED
            what = f"trained in {last} s" if trained else "taken from the cache"
            print(f"process {share}: repeat {index} fold {k} {what}, {until - time.time():.0f} s left", flush=True)
    return seconds


def train(args: argparse.Namespace) -> None:
    """The CV on this machine: the folds by N processes, then scored. The record (device.json, beside the summary
    in the profile's metrics) gains a call where this one continued from folds an earlier call left in the cache."""
    params = load_params(args.params, args.overrides)
    device = pick_device(params.train.device)
    start = time.time()
    until = start + 60 * args.minutes
    jobs = [(args.params, args.model, args.overrides, i, args.processes, until) for i in range(args.processes)]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        shares = pool.starmap(worker, jobs)
    folds = {fold: s for share in shares for fold, s in share.items()}
    call = {"minutes": args.minutes, "train_wall_s": round(time.time() - start), "fold_seconds": folds}
    repeats = cached_repeats(plan_cv(args.model, params)[0])
    metrics = params.paths.metrics
    record = _record(metrics / DEVICE, continued=CACHED in folds.values()) | {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "precision": effective_precision(params.train.precision, device),
        "overrides": args.overrides,
        "processes": args.processes,
    }
    record["calls"].append(call | {"complete_repeats": repeats})
    metrics.mkdir(parents=True, exist_ok=True)
    write_json(metrics / DEVICE, record)  # what trained, should scoring fail
    if repeats:
        from ncseg.tracking.store import project_root

        scored = load_params(args.params, [*args.overrides, f"cv.repeats={repeats}"])
        scoring = time.time()
        cross_validate(args.model, scored, project_root(ROOT))
        record["calls"][-1]["scored_wall_s"] = round(time.time() - scoring)
        write_json(metrics / DEVICE, record)
    if args.out and args.out.resolve() != metrics.resolve():
        args.out.mkdir(parents=True, exist_ok=True)
        for path in (metrics / DEVICE, metrics / "cv" / f"{args.model}.json"):
            if path.is_file():
                shutil.copyfile(path, args.out / path.name)
    print(json.dumps(record))
    if not repeats:
        sys.exit(f"{args.model}: no repeat finished all its folds within {args.minutes} min")


def _record(path: Path, continued: bool) -> dict:
    """The record this call adds to: the last one's where it continued that run's folds, else a new one."""
    return json.loads(path.read_text()) if continued and path.is_file() else {"calls": []}


def compare(args: argparse.Namespace) -> None:
    """The GPU CV kept under the profile's metrics beside the study's own models, on the same folds."""
    kept = load_params(args.params, args.overrides).paths.metrics
    study = load_params(args.params).paths.metrics
    for path in (kept / "cv" / f"{args.model}.json", kept / DEVICE):
        if not path.is_file():
            sys.exit(f"{path}: no GPU CV of {args.model} kept there (run this on the GPU machine first)")
    gpu, record = CVSummary.load(kept / "cv" / f"{args.model}.json"), json.loads((kept / DEVICE).read_text())
    others = {name: CVSummary.load(study / "cv" / f"{name}.json") for name in args.baselines}
    if off := [n for n, b in others.items() if _folds(b) != _folds(gpu)]:
        sys.exit(f"{', '.join(off)}: not the GPU CV's images, groups and {gpu.repeats} x {gpu.n_folds} folds")
    calls = record["calls"]
    fold_s = statistics.median(s for c in calls for s in c["fold_seconds"].values() if s != CACHED)
    minutes = ", then ".join(f"--minutes {c['minutes']:g}" for c in calls)
    how = (
        f"Command: `python -m benchmarks.device_cv {' '.join(f'-S {o}' for o in args.overrides)} -m {args.model} "
        f"--processes {record['processes']}` on one {record['device']} (torch {record['torch']}, "
        f"{record['precision']}), {len(calls)} call(s) on one machine ({minutes}; a call trains what the last left "
        f"in the fold cache): {sum(c['train_wall_s'] for c in calls) / 60:.1f} min of training for {gpu.repeats} x "
        f"{gpu.n_folds} folds (a fold {fold_s:.0f} s median, {record['processes']} at once), scored in "
        f"{calls[-1]['scored_wall_s']} s; then `--compare` here. The other rows: the study's committed CV "
        f"({study}/cv, trained on a CPU: README), on the same images, leak-free groups, splits and seeds, so the "
        "same test images fold by fold; Δ paired fold by fold with CV's corrected 95 % interval. Mean over test "
        "images, then mean ± std over the folds; material: every foreground class as one mask (—: not in that CV's "
        "summary)."
    )
    write_report(args.out, f"{args.model} on its GPU schedule beside the study's models", how, table(gpu, others))


def _folds(s: CVSummary) -> tuple:
    """What makes two CVs' folds the same test images: the data as grouped, and the folds and repeats."""
    return s.n_images, s.groups, s.joined_groups, s.leak_threshold, s.n_folds, s.repeats


def table(gpu: CVSummary, others: dict[str, CVSummary]) -> list[str]:
    """Each class's Jaccard per model, then the GPU model's gains paired with each other model's, fold by fold."""
    classes = list(gpu.class_jaccard_per_fold)
    head = "| model | " + " | ".join(f"{c} Jaccard" for c in classes) + " | particle F1 | material Jaccard |"
    lines = [head, "|---|" + "---|" * (len(classes) + 2)]
    for name, s in {f"{gpu.model} (GPU schedule)": gpu, **others}.items():
        cells = [f"{s.classes[c]['jaccard_mean']:.3f} ± {s.classes[c]['jaccard_std']:.3f}" for c in classes]
        f1 = " / ".join(f"{v['object_f1_mean']:.3f}" for v in s.classes.values() if "object_f1_mean" in v) or "—"
        material = f"{s.material_jaccard_mean:.3f}" if s.material_jaccard_mean is not None else "—"
        lines.append(f"| {name} | {' | '.join(cells)} | {f1} | {material} |")
    lines += ["", "| Δ paired | " + " | ".join(f"{c} [95 %], folds better" for c in classes) + " |"]
    lines.append("|---|" + "---|" * len(classes))
    for name, s in others.items():
        cells = []
        for c in classes:
            mine, theirs = list(gpu.class_jaccard_per_fold[c]), list(s.class_jaccard_per_fold[c])
            g = fold_paired_gain(gpu.model, mine, name, theirs, gpu.n_folds)
            cells.append(f"{g.gain_mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}], {g.folds_better} of {len(mine)}")
        lines.append(f"| {gpu.model} − {name} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "studies" / "pt-alumina-classes" / "params.yaml")
    parser.add_argument("-m", "--model", default="recipe-unet6")
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as ncseg's")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument(
        "--minutes", type=float, default=7.0, help="a process's next fold starts only if its last one's time fits"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="training: a folder to copy the record and summary to (to fetch "
        "them); --compare: the report (default benchmarks/device_cv_pt_alumina.md)",
    )
    parser.add_argument("--compare", action="store_true", help="no training: the kept GPU CV vs --baselines")
    parser.add_argument("--baselines", nargs="+", default=["unet4", "classical-levels"])
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    if args.model not in params.models:
        parser.error(f"unknown model {args.model}; {args.params} defines: {', '.join(params.models)}")
    if args.compare:
        args.out = args.out or ROOT / "benchmarks" / "device_cv_pt_alumina.md"
        compare(args)
    else:
        untracked()
        train(args)


if __name__ == "__main__":
    main()
