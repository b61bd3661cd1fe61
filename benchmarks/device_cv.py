"""One model's cross-validation on a GPU machine, for the schedules a study names as its GPU profile:

    python -m benchmarks.device_cv -p PARAMS -m MODEL [-S KEY=VALUE ...] [--processes N] [--minutes M]
        [--out DIR]

N processes fill the study's fold cache at once (`ncseg.training.cv.fill_fold_cache`: a batch of two 512 px crops
uses a fraction of a large GPU), process i taking folds i, i+N, … of the repeat-major plan, so the first repeat
finishes first. A process starts another fold only while the one it finished last would still end within M
minutes of the start. Then the CV runs as `ncseg train MODEL` runs it, taking every fold from the cache, on the
repeats whose folds all finished (`cv.repeats` lowered to that: no fold's key depends on it). Writes DIR/MODEL.json
(the CV summary) and DIR/folds.json (the machine, each process's fold seconds).

The machine this is for has no MLflow and can't install it: the tracking calls become no-ops there (they change
no number; the summary is what `ncseg train` writes). Run here, with MLflow, it tracks as `ncseg train` does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.common import ROOT, cpu_model
from ncseg.config import load_params
from ncseg.training.cv import cached_repeats, cross_validate, fill_fold_cache, plan_cv


def untracked() -> None:
    """Where MLflow is missing, `ncseg.tracking.runs` as a module of no-ops (cross_validate logs through it)."""
    if importlib.util.find_spec("mlflow") is not None:
        return

    @contextmanager
    def run(*_: object, **__: object) -> Iterator[str]:
        yield "untracked"  # the model card's run id: no MLflow run

    stub = types.ModuleType("ncseg.tracking.runs", "MLflow is not installed here: nothing is logged")
    stub.__getattr__ = lambda _name: lambda *_, **__: None  # every log_* function
    stub.parent_run, stub.child_run = run, run
    sys.modules[stub.__name__] = stub
    import ncseg.tracking

    ncseg.tracking.runs = stub


def worker(params_file: Path, model: str, overrides: list[str], share: int, of: int, until: float) -> list[int]:
    """One process's share of the folds, each started only while the last one's time still fits before `until`;
    returns the seconds of each fold it trained."""
    torch.set_num_threads(max(1, (multiprocessing.cpu_count() or 1) // of))
    run, _, _ = plan_cv(model, load_params(params_file, overrides))
    plan = [(r, k) for r in range(len(run.repeats)) for k in range(run.params.cv.n_folds)][share::of]
    taken: list[int] = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, k in plan:
            if time.time() + (taken[-1] if taken else 0) > until:
                break
            taken += fill_fold_cache(run, [(index, k)], Path(scratch))
            print(f"process {share}: repeat {index} fold {k} done, {until - time.time():.0f} s left", flush=True)
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "studies" / "pt-alumina-classes" / "params.yaml")
    parser.add_argument("-m", "--model", default="recipe-unet6")
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as ncseg's")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=7.0, help="no fold starts that would end after this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "device_cv")
    args = parser.parse_args()
    untracked()
    params = load_params(args.params, args.overrides)
    if args.model not in params.models:
        parser.error(f"unknown model {args.model}; {args.params} defines: {', '.join(params.models)}")
    start = time.time()
    until = start + 60 * args.minutes
    jobs = [(args.params, args.model, args.overrides, i, args.processes, until) for i in range(args.processes)]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        seconds = pool.starmap(worker, jobs)
    trained_s = time.time() - start
    repeats = cached_repeats(plan_cv(args.model, params)[0])
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_model(),
        "torch": torch.__version__,
        "overrides": args.overrides,
        "processes": args.processes,
        "fold_seconds": seconds,
        "train_wall_s": round(trained_s),
        "complete_repeats": repeats,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "folds.json").write_text(json.dumps(report, indent=1))  # what trained, should scoring fail
    if repeats:
        from ncseg.tracking.store import project_root

        scored = load_params(args.params, [*args.overrides, f"cv.repeats={repeats}"])
        cross_validate(args.model, scored, project_root(ROOT))
        shutil.copyfile(scored.paths.metrics / "cv" / f"{args.model}.json", args.out / f"{args.model}.json")
        report["scored_wall_s"] = round(time.time() - start - trained_s)
    (args.out / "folds.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    if not repeats:
        sys.exit(f"{args.model}: no repeat finished all its folds within {args.minutes} min")


if __name__ == "__main__":
    main()
