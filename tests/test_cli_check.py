"""`ncseg data check`: near-copies inside a training set and between it and a test set, with an exit code a script
can act on (0: none in the test set, 2: a test image has a near-copy in training, 1: bad input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.data.groups import write_groups
from ncseg.data.layout import IMAGES
from ncseg.io.images import write_tiff

from .conftest import ROOT
from .data.test_leaks import distinct_images, near_copies, view


@pytest.fixture(scope="module")
def fields() -> list[np.ndarray]:
    return distinct_images(6)


def _folder(root: Path, images: dict[str, np.ndarray]) -> Path:
    for name, image in images.items():
        write_tiff(root / f"{name}.tif", image.astype(np.uint16), None)
    return root


def _check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "check", *args], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_test_set_with_a_near_copy_of_a_training_image_exits_2_naming_the_pair(fields, tmp_path):
    """A raw dataset folder (images/, groups.csv) and a plain folder of test images; the threshold is the study's."""
    train = _folder(tmp_path / "train" / IMAGES, {f"t{i}": view(f) for i, f in enumerate(fields[:3])})
    _folder(train, {"t0_turned": np.rot90(view(fields[0]))})
    write_groups(train.parent, {"t0": "slice 1", "t0_turned": "slice 1", "t1": "slice 2", "t2": "slice 3"})
    test = _folder(tmp_path / "test", {"new": view(fields[4]), "again": near_copies(fields[2])["flipped"]})
    params = str(ROOT / "params.yaml")
    code, output = _check(str(train.parent), str(test), "--out", str(tmp_path / "pairs"), "-p", params)
    assert code == 2, output
    assert "again" in output and "t2" in output and "1 of 2 test images have a near-copy in training" in output
    assert "same" in output, "a training pair inside one group is marked harmless"
    pictures = sorted(p.name for p in (tmp_path / "pairs").iterdir())
    assert pictures == ["across-1.000-again-t2.png", "within-1.000-t0-t0_turned.png"]


def test_a_clean_test_set_exits_0_and_lists_the_training_sets_own_near_copies(fields, tmp_path):
    train = _folder(tmp_path / "train", {"a": view(fields[0]), "b": near_copies(fields[0])["shifted"]})
    _folder(train, {"c": view(fields[1])})
    test = _folder(tmp_path / "test", {"new": view(fields[5])})
    code, output = _check(str(train), str(test), "--out", str(tmp_path / "pairs"), "--threshold", "0.9")
    assert code == 0, output
    assert "1 near-duplicate pairs (similarity >= 0.9)" in output and "a " in output and " b " in output
    assert [p.name for p in (tmp_path / "pairs").iterdir()] == ["within-0.992-a-b.png"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "nowhere", "nowhere: no such folder"),
        (lambda root: root, "no images"),
        (lambda root: (root / "bad.tif").write_bytes(b"not a tiff") and root, "bad.tif"),
    ],
    ids=["missing folder", "no images", "unreadable image"],
)
def test_bad_input_is_one_error_line_naming_the_file_and_exit_1(make, expected, tmp_path):
    code, output = _check(str(make(tmp_path)), "--out", str(tmp_path / "pairs"))
    assert code == 1 and output.startswith("error: ") and expected in output and "Traceback" not in output, output
    assert not (tmp_path / "pairs").exists(), "nothing written"


def test_an_out_folder_holding_other_files_is_refused_and_kept(fields, tmp_path):
    train = _folder(tmp_path / "train", {"a": view(fields[0]), "b": np.fliplr(view(fields[0]))})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, output = _check(str(train), "--out", str(tmp_path / "mine"))
    assert code == 1 and "holds other files than a check's pictures" in output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
