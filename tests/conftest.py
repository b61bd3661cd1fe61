"""Shared fixtures: the project's own params, small synthetic datasets, the shared real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ncseg.config import Params, load_params

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: torch's default of a thread per core in each would have their
    # OpenMP threads spin against each other (a training ran 4x slower beside another). One each, and the
    # commands a test starts (dvc, ncseg, mlflow) inherit it.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests share one worker under pytest-xdist (`--dist loadgroup`): they share one tiny study per
    session (tests/e2e/conftest.py), which every other worker would train again."""
    for item in items:
        if item.path.is_relative_to(ROOT / "tests" / "e2e"):
            item.add_marker(pytest.mark.xdist_group("e2e"))
