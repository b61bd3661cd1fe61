"""One tiny study, run once per session the way a user runs it: a copy of the project, the bundled demo data
pulled from the DVC store, `dvc repro` on a tiny params profile. The registry, serving and predict tests use
the model it registers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from ncseg.config import apply_override

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = [
    "src",
    "dvc.yaml",
    "data.dvc",
    ".dvc/config",
    ".dvc/plots",
    ".dvcignore",
    "dvc-store",
    ".gitignore",
    ".dvc/.gitignore",
]
TINY_PROFILE = [
    "cv.n_folds=2",
    "train.epochs=8",  # inner-val Jaccard >= 0.95 from epoch 5 (16 epochs: test 0.962, Otsu 0.925)
    "train.steps_per_epoch=8",
    "train.crop_px=128",
    "train.patience=5",
    "inference.tile=256",
    "inference.context=16",
    "models={unet4: {kind: unet4, base_channels: 16, dropout: 0.1, padding: same, l2: 0.0, weight_decay: 0.0},"
    " classical-otsu: {kind: classical, sigma_nm: 1.0, min_area_nm2: 12.0}}",
    "tracking.experiment=ncseg-e2e",
    "register.max_pixels=65536",  # 256 x 256, so the served model's size limit is testable with a small payload
]


def project_env(project: Path) -> dict[str, str]:
    """The venv's bin first on PATH (dvc stages call `ncseg`; `mlflow models serve` execs `uvicorn`)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return env


def run(
    args: list[str], project: Path, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`args` in `project`, with `project_env` (or `env`, e.g. one whose tracking URI is a server); must succeed."""
    result = subprocess.run(
        args, cwd=project, env=env or project_env(project), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def new_tiny_project(project: Path, overrides: Sequence[str] = ()) -> Path:
    """A copy of the project in `project` with the tiny profile (then `overrides`), a git repository and the demo
    data pulled, ready for `dvc repro`."""
    for name in PROJECT_FILES:
        src, dst = ROOT / name, project / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    for assignment in [*TINY_PROFILE, *overrides]:
        apply_override(tree, assignment)
    (project / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["dvc", "pull", "-q", "data.dvc"], project)
    return project


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = new_tiny_project(tmp_path_factory.mktemp("study"))
    run(["dvc", "repro"], project)
    return project
