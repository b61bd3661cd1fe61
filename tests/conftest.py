"""Shared fixtures: the project's own params, small synthetic datasets, the shared real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ncseg.config import Params, load_params

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = ROOT.parent / "shared" / "datasets" / "haadf-pt-alumina"


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def small_params() -> Params:
    """The project's params with a small, fast synthetic dataset (4 images of 128 px)."""
    return load_params(ROOT / "params.yaml", ["data.synth.n_images=4", "data.synth.size_px=128", "augment.n_rotated=2"])


@pytest.fixture(scope="session")
def small_raw(small_params: Params, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ncseg.data.synth import generate, write_dataset

    out = tmp_path_factory.mktemp("raw")
    write_dataset(generate(small_params.data.synth, small_params.seed), out, small_params.data.synth.pixel_size_nm)
    return out


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    if not SHARED_DATASET.is_dir():
        pytest.skip(f"the shared real dataset is not beside the project ({SHARED_DATASET})")
    return SHARED_DATASET


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Each phase's report on the test item: napari's make_napari_viewer reads it (napari's own conftest does this)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
