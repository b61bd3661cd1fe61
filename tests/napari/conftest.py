"""A project with raw data and a model folder for the plugin's tests: the model is an untrained tiny network saved
the way the registry logs one (MLflow pyfunc from code), so the widget loads it as a user's model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("napari", reason="the napari extra is not installed (pip install 'ncseg[napari]')")

from ncseg.config import apply_override

from ..conftest import ROOT
from ..serving.test_model import _served


def write_project(folder: Path, raw: Path, *overrides: str) -> Path:
    """A params.yaml in `folder` (the project's own, `overrides` applied) whose raw data is a copy of `raw`."""
    shutil.copytree(raw, folder / "data" / "raw")
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    for assignment in overrides:
        apply_override(tree, assignment)
    (folder / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    return folder / "params.yaml"


@pytest.fixture
def project(tmp_path: Path, small_raw: Path) -> Path:
    return write_project(tmp_path / "study", small_raw)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow

    from ncseg.registry.promote import PACKAGE
    from ncseg.serving.model import MODEL_CODE

    work = tmp_path_factory.mktemp("model")
    _served(work / "parts", ["image"])
    mlflow.pyfunc.save_model(
        work / "model",
        python_model=str(MODEL_CODE),
        artifacts={"weights": str(work / "parts" / "weights"), "serving": str(work / "parts" / "serving.json")},
        code_paths=[str(PACKAGE)],
    )
    return work / "model"


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's params.yaml says where its registry is. Earlier tests in the session leave
    MLFLOW_TRACKING_URI behind (mlflow.set_tracking_uri writes it into os.environ), and a dead server there
    would keep the widget retrying."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
