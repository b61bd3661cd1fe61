"""The tiny study the CV tests share."""

from pathlib import Path

import pytest

from ncseg.config import load_params
from ncseg.data.rotations import augment

from ..conftest import ROOT

TINY_UNET = "{kind: unet4, base_channels: 4, dropout: 0.0, padding: same, l2: 0.0, weight_decay: 0.0}"


def tiny_study(raw: Path, work: Path, n_folds: int, store: Path) -> list[str]:
    """The tiny study's settings over params.yaml: its data under `work`, its MLflow store in folder `store`."""
    return [
        f"paths={{raw: {raw}, augmented: {work}/aug, models: {work}/models, metrics: {work}/metrics, "
        f"plots: {work}/plots}}",
        "augment.n_rotated=2",
        f"cv.n_folds={n_folds}",
        "train.epochs=1",
        "train.steps_per_epoch=1",
        "train.batch_size=2",
        "train.crop_px=64",
        "inference.tile=128",
        f"models={{unet4: {TINY_UNET}}}",
        "register.members=1",
        f"tracking.uri=sqlite:///{store}/mlflow.db",
    ]


@pytest.fixture
def study(small_raw, tmp_path, monkeypatch):
    """A tiny study on the small synthetic set: (params for n folds, the model folder, the metrics file)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = tmp_path / "work"

    def params(n_folds: int = 2, *extra: str):
        return load_params(ROOT / "params.yaml", [*tiny_study(small_raw, work, n_folds, tmp_path), *extra])

    p = params()
    augment(p.paths.raw, p.paths.augmented, p.augment, p.seed)
    return params, work / "models" / "unet4", work / "metrics" / "cv" / "unet4.json"
