"""`ncseg predict` on demo images: files a microscopist opens, and counts/sizes near the generator's truth."""

import csv
import shutil

import numpy as np
import pytest

from ncseg.io.images import read_image

from .conftest import project_env

pytestmark = pytest.mark.slow
MODEL = "models:/ncseg-nc-segmenter@champion"


@pytest.fixture(scope="module")
def predicted(tiny_project, tmp_path_factory):
    import subprocess

    inputs = tmp_path_factory.mktemp("inputs")
    for name in ("synth_02", "synth_09"):
        shutil.copy(tiny_project / "data" / "raw" / "images" / f"{name}.tif", inputs)
    (inputs / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path_factory.mktemp("predictions")
    result = subprocess.run(
        ["ncseg", "predict", MODEL, str(inputs), "--out", str(out), "--save-probability", "--rois"],
        cwd=tiny_project,
        env=project_env(tiny_project),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, out


def test_a_broken_file_fails_the_run_but_keeps_the_others(predicted):
    result, out = predicted
    assert result.returncode != 0
    assert "broken.tif" in result.stderr and "1 of 3 images failed" in result.stderr
    for name in ("synth_02", "synth_09"):
        assert (out / "masks" / f"{name}.tif").is_file() and (out / "overlays" / f"{name}.png").is_file()
        assert (out / "particles" / f"{name}.csv").is_file() and (out / "probability" / f"{name}.tif").is_file()
        assert (out / "labels" / f"{name}.tif").is_file() and (out / "rois" / f"{name}.zip").is_file()
        assert (out / "uncertainty" / f"{name}.tif").is_file()
    assert (out / "summary.csv").is_file() and (out / "size_distribution.png").is_file()


def test_masks_are_imagej_masks_with_the_pixel_size(predicted):
    _, out = predicted
    mask = read_image(out / "masks" / "synth_02.tif")
    assert mask.data.dtype == np.uint8 and set(np.unique(mask.data)) <= {0, 255}
    assert mask.pixel_size_nm == pytest.approx(0.5)


def test_counts_and_sizes_match_the_synthetic_truth(predicted, tiny_project):
    _, out = predicted
    with (tiny_project / "data" / "raw" / "particles.csv").open() as fh:
        truth = list(csv.DictReader(fh))
    with (out / "summary.csv").open() as fh:
        summary = {row["image"]: row for row in csv.DictReader(fh)}
    for name in ("synth_02", "synth_09"):
        crystals = [t for t in truth if t["image"] == name]
        true_edge = np.mean([float(t["edge_nm"]) for t in crystals])
        row = summary[f"{name}.tif"]
        assert int(row["n_particles"]) == pytest.approx(len(crystals), rel=0.2), name
        assert float(row["edge_nm_mean"]) == pytest.approx(true_edge, rel=0.1), name
        assert 0 <= float(row["uncertainty"]) < 1 and row["ood"] == "", "a training image is in the training domain"
