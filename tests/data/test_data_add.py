"""`ncseg data add`: corrected images join the raw data whole or not at all, in their specimen's group."""

import shutil

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.data import importer
from ncseg.data.groups import read_groups
from ncseg.interop.imagej import write_roiset
from ncseg.io.atomic import folder_lock
from ncseg.io.images import read_image, read_mask

from ..builders import fail_on_call
from ..conftest import ROOT


def _add(raw, *args):
    argv = ["data", "add", *map(str, args), "-p", str(ROOT / "params.yaml"), "-S", f"paths.raw={raw}"]
    return CliRunner().invoke(app, argv)


def _said(result) -> str:
    return " ".join(result.output.split())


def _tree(root) -> dict:
    return {p.relative_to(root): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.fixture
def raw(tmp_path):
    """A raw folder as `ncseg data synth` leaves it: images/, masks/, particles.csv, no group manifest."""
    folder = tmp_path / "data" / "raw"
    (folder / "images").mkdir(parents=True), (folder / "masks").mkdir()
    for name in ("r0", "r1", "r2"):
        mask = np.zeros((32, 32), np.uint8)
        mask[4:12, 4:12] = 255
        tifffile.imwrite(folder / "images" / f"{name}.tif", np.full((32, 32), 7, np.uint16))
        tifffile.imwrite(folder / "masks" / f"{name}.tif", mask)
    (folder / "particles.csv").write_text("image,edge_nm\nr0,10\n")
    return folder


@pytest.fixture
def corrected(tmp_path):
    """Two new images with their corrected RoiSets, as `predict --rois` + Fiji leave them."""
    folder = tmp_path / "corrected"
    (folder / "images").mkdir(parents=True)
    for k, name in enumerate(("new_a", "new_b")):
        labels = np.zeros((32, 32), np.uint16)
        labels[2:10, 2:10], labels[20:28, 5 + k : 13 + k] = 1, 2
        tifffile.imwrite(folder / "images" / f"{name}.tif", np.full((32, 32), 9, np.uint16))
        write_roiset(folder / "rois" / f"{name}.zip", labels)
    return folder


def test_corrected_rois_are_added_beside_the_raw_data_in_one_group(raw, corrected, tmp_path):
    before = _tree(raw)
    result = _add(raw, corrected / "images", corrected / "rois", "--group", "slice-7")
    assert result.exit_code == 0, result.output
    assert "added 2 image/mask pairs" in _said(result) and "new_a, new_b" in _said(result)
    assert {k: v for k, v in _tree(raw).items() if k in before} == before, "the raw data is kept byte for byte"
    assert sorted(p.name for p in (raw / "images").iterdir()) == [
        "new_a.tif",
        "new_b.tif",
        "r0.tif",
        "r1.tif",
        "r2.tif",
    ]
    mask = read_mask(raw / "masks" / "new_b.tif")
    assert mask[5, 5] and mask[24, 7] and mask.sum() == 128
    assert read_groups(raw) == {"r0": "r0", "r1": "r1", "r2": "r2", "new_a": "slice-7", "new_b": "slice-7"}
    assert sorted(p.name for p in raw.parent.iterdir() if p.name != ".raw.lock") == ["raw"], "no staging left"


def test_cv_never_splits_the_added_group(raw, corrected, small_params):
    from ncseg.data.rotations import plan
    from ncseg.training.plan import assign_folds

    assert _add(raw, corrected / "images", corrected / "rois", "--group", "slice-7").exit_code == 0
    entries = plan(sorted(p.stem for p in (raw / "images").iterdir()), read_groups(raw), small_params.augment, 1)
    for seed in range(5):
        folds = assign_folds([e.group for e in entries], 3, seed)
        assert len({f for f, e in zip(folds, entries, strict=True) if e.group == "slice-7"}) == 1


def test_without_a_group_each_image_is_its_own_and_an_existing_manifest_is_kept(raw, corrected):
    (raw / "groups.csv").write_text("name,group\nr0,s1\nr1,s1\nr2,s2\n")
    assert _add(raw, corrected / "images" / "new_a.tif", corrected / "rois" / "new_a.zip").exit_code == 0
    assert read_groups(raw) == {"r0": "s1", "r1": "s1", "r2": "s2", "new_a": "new_a"}


def test_a_name_already_in_the_raw_data_is_refused_by_name(raw, corrected):
    (corrected / "images" / "new_b.tif").rename(corrected / "images" / "r1.tif")
    (corrected / "rois" / "new_b.zip").rename(corrected / "rois" / "r1.zip")
    before = _tree(raw)
    result = _add(raw, corrected / "images", corrected / "rois")
    expected = f"{corrected / 'images' / 'r1.tif'}: an image named 'r1' is already in {raw / 'images'}"
    assert result.exit_code != 0 and "data add refused, nothing written" in _said(result)
    assert expected in _said(result), result.output
    assert _tree(raw) == before


BAD = {
    "unpaired image": (lambda c: (c / "rois" / "new_b.zip").unlink(), "new_b.tif: no mask named new_b.*"),
    "wrong size": (
        lambda c: tifffile.imwrite(c / "images" / "new_a.tif", np.zeros((16, 16), np.uint8)),
        "ROIs outside the 16 x 16 px image: 2",
    ),
    "not a RoiSet": (lambda c: (c / "rois" / "new_a.zip").write_bytes(b"PK not a zip"), "not an ImageJ ROI file"),
    "a non-binary raster mask": (
        lambda c: [
            (c / "rois" / "new_a.zip").unlink(),
            tifffile.imwrite(c / "rois" / "new_a.tif", np.arange(1024, dtype=np.uint16).reshape(32, 32)),
        ],
        "new_a.tif: mask is not binary",
    ),
    "a missing folder": (lambda c: (c / "rois").rename(c / "elsewhere"), "rois: no such file or folder"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_adds_nothing_and_names_the_file(raw, corrected, case):
    damage, message = BAD[case]
    damage(corrected)
    before = _tree(raw)
    result = _add(raw, corrected / "images", corrected / "rois", "--group", "g")
    assert result.exit_code != 0 and message in _said(result), result.output
    assert _tree(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir() if p.name != ".raw.lock") == ["raw"]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_add_leaves_the_raw_data_as_it_was_and_frees_the_lock(raw, corrected, monkeypatch, failure):
    before = _tree(raw)
    fail_on_call(monkeypatch, importer, "write_mask", 2, failure)
    with pytest.raises(failure):
        importer.add_to_dataset(corrected / "images", corrected / "rois", raw, group="g")
    assert _tree(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir() if p.name != ".raw.lock") == ["raw"]
    monkeypatch.undo()
    assert _add(raw, corrected / "images", corrected / "rois").exit_code == 0, "the lock went with the failure"


def test_a_second_writer_is_turned_away(raw, corrected):
    with folder_lock(raw):
        result = _add(raw, corrected / "images", corrected / "rois")
    assert result.exit_code != 0 and "another ncseg process is writing it" in _said(result)


def test_no_raw_data_says_how_to_get_it(tmp_path, corrected):
    result = _add(tmp_path / "nothing", corrected / "images", corrected / "rois")
    assert result.exit_code != 0 and "no raw data to add to (run `dvc pull`" in _said(result)
    assert not (tmp_path / "nothing").exists()


def test_a_correction_that_deletes_every_roi_is_added_with_a_warning(raw, corrected):
    write_roiset(corrected / "rois" / "new_a.zip", np.zeros((32, 32), np.uint16))
    result = _add(raw, corrected / "images", corrected / "rois")
    assert result.exit_code == 0 and "new_a.zip: holds no ROI; added as an image without NCs" in _said(result)
    assert not read_mask(raw / "masks" / "new_a.tif").any()
    assert read_image(raw / "images" / "new_a.tif").data.dtype == np.uint16


THREE = (
    "labels=[{name: background, kind: region, colour: '#000000'}, {name: support, kind: region, colour: '#3366cc'},"
    " {name: pt, kind: particles, colour: '#ffd700'}]"
)


def _add_classes(raw, *args):
    argv = ["data", "add", *map(str, args), "-p", str(ROOT / "params.yaml"), "-S", f"paths.raw={raw}", "-S", THREE]
    return CliRunner().invoke(app, [*argv, "-S", "models.unet4.aux_classes=0"])


def _class_maps(raw, corrected):
    """The raw images' class maps (support left, Pt square right), and the new images' with theirs."""
    (raw / "classes").mkdir()
    for name in ("r0", "r1", "r2"):
        classes = (read_mask(raw / "masks" / f"{name}.tif") > 0).astype(np.uint8)
        tifffile.imwrite(raw / "classes" / f"{name}.tif", classes)
    (corrected / "classes").mkdir()
    for name in ("new_a", "new_b"):
        mask = np.zeros((32, 32), np.uint8)
        mask[2:10, 2:10], mask[20:28, 20:28] = 255, 255
        classes = np.where(mask > 0, 1, 0).astype(np.uint8)
        classes[20:28, 20:28] = 2
        (corrected / "masks").mkdir(exist_ok=True)
        tifffile.imwrite(corrected / "masks" / f"{name}.tif", mask)
        tifffile.imwrite(corrected / "classes" / f"{name}.tif", classes)


def test_class_maps_are_added_with_their_images_where_the_data_has_them(raw, corrected):
    _class_maps(raw, corrected)
    shutil.move(raw / "classes", raw.parent / "kept")
    alone = _add_classes(raw, corrected / "images", corrected / "masks", "--classes", corrected / "classes")
    assert alone.exit_code != 0 and "have no class maps to add these beside" in _said(alone)
    shutil.move(raw.parent / "kept", raw / "classes")
    result = _add_classes(raw, corrected / "images", corrected / "masks", "--classes", corrected / "classes")
    assert result.exit_code == 0, result.output
    added = read_image(raw / "classes" / "new_a.tif").data
    assert added.dtype == np.uint8 and set(np.unique(added)) == {0, 1, 2}


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (None, "the raw images have class maps; give each added image one (--classes)"),
        ("id", "holds class 3, but the label set has 3 classes"),
        ("mask", "pixels are foreground in it or in"),
    ],
)
def test_added_images_without_fitting_class_maps_are_refused_and_nothing_changes(raw, corrected, spoil, message):
    _class_maps(raw, corrected)
    path = corrected / "classes" / "new_b.tif"
    if spoil == "id":
        tifffile.imwrite(path, np.full((32, 32), 3, np.uint8) * (tifffile.imread(path) > 0))
    if spoil == "mask":
        tifffile.imwrite(path, np.ones((32, 32), np.uint8))
    before = _tree(raw)
    extra = [] if spoil is None else ["--classes", corrected / "classes"]
    result = _add_classes(raw, corrected / "images", corrected / "masks", *extra)
    assert result.exit_code != 0 and message in _said(result), result.output
    assert _tree(raw) == before
