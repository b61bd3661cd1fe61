"""Does a change leave the demo's CV numbers alone? The same tiny cross-validation with an earlier revision's code
and with this checkout's, compared number for number and network for network.

    python -m benchmarks.same_numbers REV [--out FILE]                       -> benchmarks/same_numbers.md

A change that should not touch the demo (a new setting off by default, a new metric, a new model kind) must leave
its folds, threshold, temperature and every trained weight exactly as they were on the same CPU. The full demo
(`dvc repro`) takes long on 2 cores; this runs params.yaml's unet4 on six synthetic images, 3 folds x 2 repeats,
2 short epochs — every code path of training, CV scoring and calibration, in a minute per revision. Each revision
runs in its own process with its own `params.yaml` (from `git worktree` of REV), on the same raw images. Weights
are compared as tensors: `torch.save` files differ in bytes (the archive takes the temp file's name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, cpu_model, write_report

PROFILE = [
    "data.synth.n_images=6",
    "data.synth.size_px=192",
    "augment.n_rotated=3",
    "cv.n_folds=3",
    "cv.repeats=2",
    "train.epochs=2",
    "train.steps_per_epoch=3",
    "train.batch_size=4",
    "train.crop_px=64",
    "inference.tile=256",
]


def run_cv(params_file: Path, out: Path) -> dict:
    """In this process: the tiny CV of unet4 with `params_file`; its numbers and a hash of each network's tensors."""
    import torch

    from ncseg.config import load_params
    from ncseg.data.rotations import augment
    from ncseg.data.synth import generate, write_dataset
    from ncseg.training.cv import cross_validate

    folders = ", ".join(f"{k}: {out}/{k}" for k in ("raw", "augmented", "models", "metrics", "plots"))
    p = load_params(params_file, [*PROFILE, f"paths={{{folders}}}", f"tracking.uri=sqlite:///{out}/mlflow.db"])
    write_dataset(generate(p.data.synth, p.seed), p.paths.raw, p.data.synth.pixel_size_nm)
    augment(p.paths.raw, p.paths.augmented, p.augment, p.seed)
    summary = cross_validate("unet4", p, out)

    def tensors(path: Path) -> str:
        state = torch.load(path, weights_only=True)
        return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()[:16]

    weights = {f.name: tensors(f) for f in sorted((p.paths.models / "unet4").glob("*.pt"))}
    keep = ("jaccard_per_fold", "fold_thresholds", "threshold", "temperature", "ece_calibrated_mean")
    return {k: getattr(summary, k) for k in keep} | {"weights": weights}


def _in_process(src: Path, params_file: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": f"{src}:{ROOT}"}
    script = "import json, sys; from pathlib import Path; from benchmarks.same_numbers import run_cv; "
    script += "print(json.dumps(run_cv(Path(sys.argv[1]), Path(sys.argv[2]))))"
    done = subprocess.run(
        [sys.executable, "-c", script, str(params_file), str(out)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shown(key: str, value: Any) -> str:
    return f"{len(value)} networks" if key == "weights" else json.dumps(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the revision to compare with (e.g. the commit before the change)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "same_numbers.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.rev], check=True)
        try:
            before = _in_process(old / "src", old / "params.yaml", Path(tmp) / "run-old")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True)
        after = _in_process(ROOT / "src", ROOT / "params.yaml", Path(tmp) / "run-new")
    head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    rows = [
        "| | " + args.rev + " | this checkout (" + head.stdout.strip() + ") | same |",
        "|---|---|---|---|",
    ]
    for key in before:
        a, b = before[key], after.get(key)
        rows.append(f"| {key} | {_shown(key, a)} | {_shown(key, b)} | {'yes' if a == b else '**no**'} |")
    same = before == after
    how = (
        f"`python -m benchmarks.same_numbers {args.rev}` on {cpu_model()}: params.yaml's unet4, {', '.join(PROFILE)}; "
        f"weights compared as tensors. **{'Identical' if same else 'Different'}.**"
    )
    write_report(args.out, "The demo's CV numbers before and after a change", how, rows)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
