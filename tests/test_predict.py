"""`ncseg predict` refuses what would lose or falsify results before it loads a model or runs a network."""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.config import ParticleParams
from ncseg.io.images import write_tiff
from ncseg.predict import run

from .conftest import ROOT

PARTICLES = ParticleParams(min_area_nm2=1.0, min_distance_nm=2.0)


@pytest.fixture
def images(tmp_path):
    image = np.zeros((32, 32), np.uint16)
    image[8:20, 8:20] = 1000
    for path in (tmp_path / "a" / "img.tif", tmp_path / "b" / "img.tif", tmp_path / "a" / "other.tif"):
        write_tiff(path, image, 0.5)
    return tmp_path


def _predict(*args: str):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return CliRunner().invoke(app, ["predict", *args, "-p", str(ROOT / "params.yaml")], env=env, catch_exceptions=False)


def test_inputs_that_would_overwrite_each_others_results_are_refused(images):
    result = _predict("models:/nc@champion", str(images / "a"), str(images / "b"), "--out", str(images / "out"))
    assert result.exit_code != 0
    assert "would all be written as img.*" in result.output and str(images / "b" / "img.tif") in result.output
    assert not (images / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--threshold", "1.5", "--threshold 1.5: must lie strictly between 0 and 1"),
        ("--threshold", "-0.2", "--threshold -0.2: must lie strictly between 0 and 1"),
        ("--threshold", "nan", "--threshold nan"),
        ("--pixel-size", "-1", "--pixel-size -1.0: must be a positive number"),
        ("--pixel-size", "0", "--pixel-size 0.0: must be a positive number"),
        ("--tta", "d8", "--tta d8: must be one of none, flip, d4"),
    ],
)
def test_bad_options_fail_before_any_model_is_loaded(images, option, value, message):
    result = _predict("models:/nc@champion", str(images / "a"), "--out", str(images / "out"), option, value)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "MLflow store" not in result.output, "checked before the model"


def test_an_out_that_is_a_file_fails_at_once(images):
    (images / "taken").write_text("not a folder")
    result = _predict("models:/nc@champion", str(images / "a"), "--out", str(images / "taken"))
    assert result.exit_code != 0 and "--out" in result.output and "is a file" in result.output


def test_outside_a_project_it_says_so_and_creates_no_store(images, monkeypatch):
    monkeypatch.chdir(images)
    result = _predict("models:/nc@champion", str(images / "a" / "other.tif"), "--out", "out")
    assert result.exit_code != 0 and "no MLflow store at" in result.output
    assert "Traceback" not in result.output
    assert not (images / "mlruns").exists(), "a stray store was created"


class FakeSegmenter:
    """Stands for the served model: bright pixels are NC."""

    threshold = 0.5

    def probability(self, image, tta=None):
        return (image > 500).astype(np.float32)


def test_a_run_writes_masks_and_a_histogram_in_the_output_folder(images):
    report = run(FakeSegmenter(), [images / "a" / "img.tif"], images / "out", PARTICLES)
    assert [row["n_particles"] for row in report.done] == [1]
    assert (images / "out" / "masks" / "img.tif").is_file() and (images / "out" / "size_distribution.png").is_file()
