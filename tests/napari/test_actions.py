"""The widget's buttons as library calls: an image layer read as a micrograph in nm, a correction added to the
project's raw data all or nothing, and the retraining run as `dvc repro` in the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pint
import pytest

from ncseg.data.groups import read_groups
from ncseg.data.importer import ImportRefusedError
from ncseg.data.layout import IMAGES, MASKS
from ncseg.io.images import Micrograph, list_images, read_image, read_mask, write_tiff
from ncseg.napari import actions
from ncseg.napari.layers import META

from .conftest import write_project

BINARY, CLASSES3 = ("background", "nanocrystal"), ("background", "support", "pt")
LABELS3 = (
    "labels=[{name: background, kind: region, colour: '#000000'}, {name: support, kind: region, colour: '#4060ff'},"
    " {name: pt, kind: particles, colour: '#ff3030'}]"
)


def _field(rng_seed: int = 3) -> tuple[Micrograph, np.ndarray]:
    """A new field of view (uint16 counts, 0.5 nm pixels) and its answer: two particles as instance labels."""
    rng = np.random.default_rng(rng_seed)
    pixels = rng.integers(100, 200, (96, 96), dtype=np.uint16)
    answer = np.zeros((96, 96), np.uint32)
    answer[10:20, 10:20], answer[50:62, 40:52] = 1, 2
    pixels[answer > 0] += 1000
    return Micrograph(pixels, 0.5, actions.Path("field_a.tif")), answer


def test_a_layer_scaled_in_nm_gives_the_pixel_size_and_a_stack_is_refused():
    data = np.zeros((8, 8), np.uint8)
    assert actions.micrograph_of(data, "a", {}, (0.4, 0.4), ("nm", "nm")).pixel_size_nm == 0.4
    assert actions.micrograph_of(data, "a", {}, (1.0, 1.0), ("pixel", "pixel")).pixel_size_nm is None
    assert actions.micrograph_of(data, "a", {META: {"pixel_size_nm": 0.7}}, (1, 1), ()).pixel_size_nm == 0.7
    with pytest.raises(ValueError, match="stack: a 3-D layer; ncseg segments 2-D greyscale micrographs"):
        actions.micrograph_of(np.zeros((3, 8, 8)), "stack", {}, (1, 1, 1), ())
    units = pint.UnitRegistry()
    in_um = actions.micrograph_of(data, "a", {}, (0.002, 0.002), (units.micrometer, units.micrometer))
    assert in_um.pixel_size_nm == pytest.approx(2.0)  # another reader's layer scaled in µm
    assert actions.micrograph_of(data, "a", {}, (1, 1), (units.pixel, units.pixel)).pixel_size_nm is None
    with pytest.raises(ValueError, match="rename the layer; its name becomes the image's file name"):
        actions.micrograph_of(data, "grid/a", {}, (1, 1), ())


def test_a_model_is_loaded_once_and_again_when_its_folder_changes(tmp_path, model_folder):
    shutil.copytree(model_folder, tmp_path / "model")
    models, project = actions.Models(), actions.Project(tmp_path, None)
    first = models.get(str(tmp_path / "model"), project)
    assert models.get(str(tmp_path / "model"), project) is first
    card = next((tmp_path / "model").rglob("serving.json"))
    card.touch()
    os.utime(card, ns=(card.stat().st_atime_ns, card.stat().st_mtime_ns + 10**9))  # rewritten by a retraining
    assert models.get(str(tmp_path / "model"), project) is not first


def test_a_correction_joins_the_raw_data_in_its_group(project):
    image, answer = _field()
    study = actions.Project.at(project)
    before = {p.stem for p in list_images(study.raw() / IMAGES)}
    result = actions.add(study, image, answer, BINARY, "region-7")
    assert [p.name for p in result.pairs] == ["field_a"]
    raw = study.raw()
    assert {p.stem for p in list_images(raw / IMAGES)} == before | {"field_a"}
    assert np.array_equal(read_image(raw / IMAGES / "field_a.tif").data, image.data)
    assert read_image(raw / IMAGES / "field_a.tif").pixel_size_nm == pytest.approx(0.5)
    assert np.array_equal(read_mask(raw / MASKS / "field_a.tif"), answer > 0)  # instances -> the 0/255 mask
    assert read_groups(raw)["field_a"] == "region-7"


def test_a_correction_that_cannot_be_added_changes_nothing(project):
    image, answer = _field()
    study = actions.Project.at(project)
    actions.add(study, image, answer, BINARY, None)
    snapshot = sorted((p.name, p.stat().st_mtime_ns) for p in study.raw().rglob("*"))
    with pytest.raises(ImportRefusedError, match="an image named 'field_a' is already in"):
        actions.add(study, image, answer, BINARY, None)
    with pytest.raises(ImportRefusedError, match=r"field_b: the answer is \(4, 4\), the image \(96, 96\)"):
        actions.add(study, Micrograph(image.data, 0.5, actions.Path("field_b.tif")), answer[:4, :4], BINARY, None)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in study.raw().rglob("*")) == snapshot


def test_a_three_class_study_takes_the_class_ids_and_refuses_an_id_it_does_not_have(tmp_path, small_raw):
    study = actions.Project.at(write_project(tmp_path, small_raw, LABELS3))
    image, answer = _field()
    with pytest.raises(ImportRefusedError, match="field_a's classes: holds class 7, but the label set has 3 classes"):
        actions.add(study, image, np.where(answer > 0, 7, 0), CLASSES3, None)
    with pytest.raises(ValueError, match=r"the answer has the model's classes \(background, nanocrystal\), but"):
        actions.add(study, image, answer, BINARY, None)  # a binary model's particle ids are no class ids


def test_a_three_class_correction_adds_its_class_map_and_its_foreground_as_the_mask(tmp_path, small_raw):
    from ncseg.data.layout import CLASSES

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    for path in list_images(raw / MASKS):
        write_tiff(raw / CLASSES / path.name, read_mask(path).astype(np.uint8), None)  # the raw data's class maps
    study = actions.Project.at(write_project(tmp_path / "study", raw, LABELS3))
    image, answer = _field()
    classes = np.where(answer == 2, 2, np.where(answer > 0, 1, 0)).astype(np.uint8)
    actions.add(study, image, classes, CLASSES3, None)
    assert np.array_equal(read_image(study.raw() / CLASSES / "field_a.tif").data, classes)
    assert np.array_equal(read_mask(study.raw() / MASKS / "field_a.tif"), classes > 0)


def test_outside_a_project_nothing_is_added(tmp_path):
    image, answer = _field()
    with pytest.raises(ValueError, match=r"no params\.yaml, so no training data to add to"):
        actions.add(actions.Project.at(tmp_path / "params.yaml"), image, answer, BINARY, None)


def _dvc_project(folder, command: str):
    folder.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=folder, check=True)
    (folder / "dvc.yaml").write_text(f"stages:\n  train:\n    cmd: {command}\n    outs: [trained.txt]\n")
    (folder / "params.yaml").write_text("{}\n")
    return actions.Project(folder, None)


def test_retraining_runs_the_projects_pipeline_with_ncseg_on_path(tmp_path, monkeypatch):
    project = _dvc_project(tmp_path / "ok", "ncseg --help > trained.txt")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # napari started from a desktop launcher: no venv on PATH
    actions.retrain(project)
    assert "Usage" in (project.folder / "trained.txt").read_text()


def test_a_failed_retraining_says_where_and_why(tmp_path):
    project = _dvc_project(tmp_path / "bad", "python -c \"raise SystemExit('no data')\"")
    with pytest.raises(RuntimeError, match=r"dvc repro in .*bad failed \(exit \d+\)"):
        actions.retrain(project)
