import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.data.groups import read_groups
from ncseg.io.images import read_image, read_mask

from ..builders import fail_on_call
from ..serving.test_model import tiff_declaring

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["data", "import", *map(str, args)])


def _said(result) -> str:
    """The command's output with the terminal's line wrapping undone."""
    return " ".join(result.output.split())


def test_imports_the_real_shared_dataset_with_groups(shared_dataset, tmp_path):
    out = tmp_path / "raw"
    result = _invoke(
        shared_dataset / "images",
        shared_dataset / "masks",
        "--out",
        out,
        "--groups",
        shared_dataset / "manifest.csv",
        "--group-column",
        "source_slice",
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.stem for p in (out / "images").iterdir())
    assert len(names) == 45
    first = shared_dataset / "images" / f"{names[0]}.tif"
    np.testing.assert_array_equal(read_image(out / "images" / f"{names[0]}.tif").data, tifffile.imread(first))
    groups = read_groups(out)
    assert groups["train_001"] == groups["train_002"] == "stem_images_al_10001"
    assert len(set(groups.values())) < 45


def test_label_maps_become_binary_masks_of_the_named_labels(shared_dataset, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for name in ("train_000", "train_001", "train_002"):
        shutil.copy(shared_dataset / "images" / f"{name}.tif", images)
        shutil.copy(shared_dataset / "labels" / f"{name}.tif", labels)
    result = _invoke(images, labels, "--out", tmp_path / "raw", "--foreground", "1,2")
    assert result.exit_code == 0, result.output
    source = tifffile.imread(labels / "train_001.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "raw" / "masks" / "train_001.tif"), np.isin(source, [1, 2]))
    refused = _invoke(images, labels, "--out", tmp_path / "raw2")
    assert refused.exit_code != 0 and "not binary" in refused.output


def _good_pair(folder, name, shape=(32, 32)):
    (folder / "images").mkdir(exist_ok=True), (folder / "masks").mkdir(exist_ok=True)
    tifffile.imwrite(folder / "images" / f"{name}.tif", np.full(shape, 100, np.uint16))
    mask = np.zeros(shape, np.uint8)
    mask[4:12, 4:12] = 255
    tifffile.imwrite(folder / "masks" / f"{name}.tif", mask)


BAD_INPUTS = {
    "unpaired": (
        lambda d: tifffile.imwrite(d / "images" / "lonely.tif", np.zeros((32, 32), np.uint8)),
        "lonely.tif",
        "no mask",
    ),
    "shape": (lambda d: tifffile.imwrite(d / "masks" / "a.tif", np.zeros((16, 32), np.uint8)), "a.tif", "shape"),
    "rgb": (
        lambda d: tifffile.imwrite(
            d / "images" / "a.tif", np.random.default_rng(1).integers(0, 9, (32, 32, 3), dtype=np.uint8)
        ),
        "a.tif",
        "RGB",
    ),
    "multipage": (
        lambda d: tifffile.imwrite(d / "images" / "a.tif", np.zeros((3, 32, 32), np.uint8), photometric="minisblack"),
        "a.tif",
        "multi-page",
    ),
    "nonbinary": (
        lambda d: tifffile.imwrite(d / "masks" / "a.tif", (np.arange(32 * 32).reshape(32, 32) % 7).astype(np.uint8)),
        "a.tif",
        "not binary",
    ),
    "empty": (lambda d: (d / "images" / "a.tif").write_bytes(b""), "a.tif", "empty"),
    "a tiny file declaring 60000²": (
        lambda d: (d / "images" / "a.tif").write_bytes(tiff_declaring(60000, 60000)),
        "a.tif",
        "60000x60000 px exceeds the limit",
    ),
    "unreadable": (lambda d: (d / "masks" / "a.tif").write_bytes(b"not a tiff at all"), "a.tif", "unreadable"),
    "alpha-only mask": (
        lambda d: tifffile.imwrite(d / "masks" / "a.tif", _alpha_only_mask(), photometric="rgb", extrasamples=[2]),
        "a.tif",
        "drawn in the alpha (transparency) channel only",
    ),
    "every mask empty": (
        lambda d: [tifffile.imwrite(d / "masks" / f"{n}.tif", np.zeros((32, 32), np.uint8)) for n in ("a", "b")],
        "masks/b.tif: the mask marks no NC",
        "every mask is empty; nothing to learn from",
    ),
    "alpha-only PNG mask": (
        lambda d: [(d / "masks" / "a.tif").unlink(), iio.imwrite(d / "masks" / "a.png", _alpha_only_mask())],
        "a.png",
        "drawn in the alpha (transparency) channel only",
    ),
    "white mask drawn in alpha": (
        lambda d: tifffile.imwrite(
            d / "masks" / "a.tif", _alpha_only_mask(colour=255), photometric="rgb", extrasamples=[2]
        ),
        "a.tif",
        "drawn in the alpha (transparency) channel only",
    ),
}


def _alpha_only_mask(colour: int = 0) -> np.ndarray:
    """What some drawing tools save: one colour everywhere, the NC painted as opacity."""
    rgba = np.full((32, 32, 4), colour, np.uint8)
    rgba[..., 3] = 0
    rgba[4:12, 4:12, 3] = 255
    return rgba


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_by_name_and_nothing_is_written(tmp_path, case):
    src, out = tmp_path / "src", tmp_path / "raw"
    src.mkdir()
    for name in ("a", "b"):
        _good_pair(src, name)
    out.mkdir()
    (out / "particles.csv").write_text("existing raw data")
    damage, filename, problem = BAD_INPUTS[case]
    damage(src)
    result = _invoke(src / "images", src / "masks", "--out", out, "--force")
    assert result.exit_code != 0
    assert filename in result.output and problem in _said(result), result.output
    assert sorted(p.name for p in out.iterdir()) == ["particles.csv"], "the raw folder must be untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "src"], "no staging folder may remain"


def test_existing_raw_data_needs_force(tmp_path):
    src, out = tmp_path / "src", tmp_path / "raw"
    src.mkdir()
    _good_pair(src, "a")
    assert _invoke(src / "images", src / "masks", "--out", out).exit_code == 0
    again = _invoke(src / "images", src / "masks", "--out", out)
    assert again.exit_code != 0 and "--force" in again.output
    assert _invoke(src / "images", src / "masks", "--out", out, "--force").exit_code == 0


def test_pixel_size_option_calibrates_uncalibrated_images(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _good_pair(src, "a")
    assert _invoke(src / "images", src / "masks", "--out", tmp_path / "raw", "--pixel-size", "0.8").exit_code == 0
    assert read_image(tmp_path / "raw" / "images" / "a.tif").pixel_size_nm == pytest.approx(0.8)


def _import_with_groups(tmp_path, text: str, bom: bool = False):
    """Import two good pairs, a and b, into tmp_path/raw with a group manifest holding `text` (column `slice`)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        _good_pair(src, name)
    groups = tmp_path / "groups.csv"
    groups.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return _invoke(
        src / "images", src / "masks", "--out", tmp_path / "raw", "--groups", groups, "--group-column", "slice"
    )


def test_a_group_manifest_mistake_refuses_the_import_naming_its_line(tmp_path):
    """Each mistake a group manifest can hold: tests/data/test_groups.py."""
    result = _import_with_groups(tmp_path, "name,slice\na,s1\nb,\n")
    assert result.exit_code != 0 and "line 3: image 'b' has an empty 'slice'" in _said(result), result.output
    assert not (tmp_path / "raw").exists()


def test_a_group_manifest_saved_by_excel_with_a_bom_and_extra_rows_imports_with_a_warning(tmp_path):
    result = _import_with_groups(tmp_path, "name,slice\na,s1\nb,s1\nb,s1\nzz,s9\n", bom=True)
    assert result.exit_code == 0, result.output
    assert read_groups(tmp_path / "raw") == {"a": "s1", "b": "s1"}
    assert "groups.csv: 1 row(s) name images that are not imported: 'zz' (line 5)" in _said(result)


def _tree(root) -> dict:
    return {p.relative_to(root): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


OVERLAPS = {  # where: (images as given, --out as given), from tmp_path with project/src/{images,masks}
    "parent": lambda t: (t / "project/src/images", t / "project"),
    "same": lambda t: (t / "project/src/images", t / "project/src/images"),
    "inside": lambda t: (t / "project/src/images", t / "project/src/masks/raw"),
    "symlink to the parent": lambda t: (t / "project/src/images", _link(t / "link", t / "project")),
    "relative parent": lambda t: (t / "project/src/images", Path("../..")),
    "images through a symlink": lambda t: (_link(t / "imgs", t / "project/src/images"), t / "project/src"),
}


def _link(link, target):
    link.symlink_to(target, target_is_directory=True)
    return link


@pytest.mark.parametrize("where", sorted(OVERLAPS))
def test_an_out_that_overlaps_the_inputs_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch, where):
    project = tmp_path / "project"
    src = project / "src"
    src.mkdir(parents=True)
    _good_pair(src, "a")
    (project / "notes.txt").write_text("the user's unrelated file")
    monkeypatch.chdir(src / "images")
    images, out = OVERLAPS[where](tmp_path)
    before = _tree(tmp_path)
    result = _invoke(images, src / "masks", "--out", out, "--force")
    said = _said(result)
    assert result.exit_code != 0 and f"--out {out}" in said and "overlaps the input" in said, result.output
    assert f"overlaps the input {images}" in said or f"overlaps the input {src / 'masks'}" in said
    assert _tree(tmp_path) == before, "nothing may be written, moved or deleted"


NOT_DATASETS = {  # what --out holds: folders that `--force` must never replace
    "a project root": {".git/HEAD": "ref: refs/heads/main", "params.yaml": "x"},
    "a dataset with the user's notes": {"images/a.tif": "", "masks/a.tif": "", "notes.txt": "my notes"},
}


@pytest.mark.parametrize("holds", sorted(NOT_DATASETS))
def test_force_replaces_a_dataset_folder_only_never_a_project_or_other_folder(tmp_path, holds):
    src, out = tmp_path / "src", tmp_path / "x"
    src.mkdir()
    _good_pair(src, "a")
    for name, text in NOT_DATASETS[holds].items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _tree(out)
    result = _invoke(src / "images", src / "masks", "--out", out, "--force")
    foreign = ", ".join(sorted({Path(name).parts[0] for name in NOT_DATASETS[holds]} - {"images", "masks"}))
    assert result.exit_code != 0 and f"--out {out}: holds {foreign}, not a dataset" in _said(result), result.output
    assert _tree(out) == before, "nothing may be written, moved or deleted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "x"], "no staging folder may remain"


def test_force_replaces_the_demo_data_that_data_synth_wrote(small_raw, tmp_path):
    """`data/raw` of the demo (images/, masks/, particles.csv) is a dataset ncseg wrote: an import may replace it."""
    src, out = tmp_path / "src", tmp_path / "raw"
    src.mkdir()
    _good_pair(src, "a")
    shutil.copytree(small_raw, out)
    result = _invoke(src / "images", src / "masks", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.rglob("*")) == ["a.tif", "a.tif", "images", "masks"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_out_the_current_folder_is_refused_with_a_clear_error(tmp_path, monkeypatch, force):
    src, here = tmp_path / "src", tmp_path / "here"
    src.mkdir(), here.mkdir()
    _good_pair(src, "a")
    monkeypatch.chdir(here)
    result = _invoke(src / "images", src / "masks", "--out", ".", *force)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "error: import refused" in result.output and "--out .: is the current folder" in _said(result)
    assert list(here.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["here", "src"]


def test_an_out_that_holds_the_group_manifest_is_refused(tmp_path):
    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir(), data.mkdir()
    _good_pair(src, "a")
    groups = data / "manifest.csv"
    groups.write_text("name,group\na,s1\n")
    result = _invoke(src / "images", src / "masks", "--out", data, "--groups", groups, "--force")
    assert result.exit_code != 0 and f"--out {data}: holds the group manifest {groups}" in _said(result)
    assert sorted(p.name for p in data.iterdir()) == ["manifest.csv"]


def test_foreground_labels_that_do_not_occur_are_an_error_naming_each_mask_and_its_labels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        _good_pair(src, name)
    result = _invoke(src / "images", src / "masks", "--out", tmp_path / "raw", "--foreground", "7")
    assert result.exit_code != 0 and not (tmp_path / "raw").exists()
    said = _said(result)
    assert "every mask is empty with --foreground 7; nothing to learn from" in said
    for name in ("a", "b"):
        assert f"masks/{name}.tif: none of the --foreground labels 7 occurs (labels found: 0, 255)" in said, said


def test_one_image_without_nc_imports_with_a_warning_naming_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        _good_pair(src, name)
    tifffile.imwrite(src / "masks" / "b.tif", np.zeros((32, 32), np.uint8))
    result = _invoke(src / "images", src / "masks", "--out", tmp_path / "raw")
    warning = (
        f"warning: {src / 'masks' / 'b.tif'}: the mask marks no NC (all pixels 0); imported as an image without NCs"
    )
    assert result.exit_code == 0 and warning in _said(result), result.output
    assert not read_mask(tmp_path / "raw" / "masks" / "b.tif").any()


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_pixel_size_that_is_no_length_is_refused(tmp_path, value):
    src = tmp_path / "src"
    src.mkdir()
    _good_pair(src, "a")
    result = _invoke(src / "images", src / "masks", "--out", tmp_path / "raw", "--pixel-size", value)
    assert result.exit_code != 0 and "--pixel-size" in result.output and not (tmp_path / "raw").exists()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_import_leaves_the_old_folder_and_no_staging(tmp_path, monkeypatch, failure):
    from ncseg.data import importer

    src, out = tmp_path / "src", tmp_path / "raw"
    src.mkdir()
    for name in ("a", "b", "c", "d"):
        _good_pair(src, name)
    out.mkdir()
    (out / "particles.csv").write_text("existing raw data")
    (out / "images").mkdir()
    before = _tree(out)
    fail_on_call(monkeypatch, importer, "write_mask", 3, failure)
    with pytest.raises(failure):
        importer.import_dataset(src / "images", src / "masks", out, force=True)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "src"]


def _label_maps(src, maps: dict) -> None:
    (src / "images").mkdir(parents=True), (src / "labels").mkdir()
    for name, labels in maps.items():
        tifffile.imwrite(src / "images" / f"{name}.tif", np.full((8, 8), 100, np.uint16))
        tifffile.imwrite(src / "labels" / f"{name}.tif", np.asarray(labels, np.uint8).repeat(4, 0).repeat(4, 1))


def test_a_label_map_without_the_foreground_labels_imports_with_a_warning_naming_its_labels(tmp_path):
    src = tmp_path / "src"
    _label_maps(src, {"a": [[0, 1], [2, 0]], "b": [[0, 3], [3, 0]]})
    result = _invoke(src / "images", src / "labels", "--out", tmp_path / "raw", "--foreground", "1,2")
    expected = f"warning: {src / 'labels' / 'b.tif'}: none of the --foreground labels 1, 2 occurs (labels found: 0, 3)"
    assert result.exit_code == 0 and expected in _said(result), result.output


def test_a_foreground_label_that_no_mask_holds_is_warned_about(tmp_path):
    src = tmp_path / "src"
    _label_maps(src, {"a": [[0, 1], [2, 0]], "b": [[0, 1], [1, 0]]})
    result = _invoke(src / "images", src / "labels", "--out", tmp_path / "raw", "--foreground", "1,7")
    expected = "warning: --foreground label(s) 7 occur in no mask (labels found: 0, 1, 2)"
    assert result.exit_code == 0 and expected in _said(result), result.output


def test_foreground_label_zero_is_refused_not_an_inverted_mask(tmp_path):
    src = tmp_path / "src"
    _label_maps(src, {"a": [[0, 1], [2, 0]]})
    result = _invoke(src / "images", src / "labels", "--out", tmp_path / "raw", "--foreground", "0,1")
    assert result.exit_code != 0 and "--foreground 0, 1: NC labels are positive" in _said(result), result.output
    assert not (tmp_path / "raw").exists()


def _roi_project(root, masks: dict, roi_folder: str = "rois"):
    """images/<name>.tif and <roi_folder>/<name>.zip: the particles of each label image as predict writes them."""
    from ncseg.interop.imagej import write_roiset

    (root / "images").mkdir(parents=True), (root / roi_folder).mkdir()
    for name, labels in masks.items():
        tifffile.imwrite(root / "images" / f"{name}.tif", np.full(labels.shape, 100, np.uint16))
        write_roiset(root / roi_folder / f"{name}.zip", labels)


def test_predicted_rois_import_back_to_the_mask_without_merges_or_new_gaps(small_raw, small_params, tmp_path):
    from scipy import ndimage
    from skimage.measure import label

    from ncseg.particles import split

    masks = {p.stem: read_mask(p) for p in sorted((small_raw / "masks").iterdir())}
    labels = {name: split(mask, 0.5, small_params.particles) for name, mask in masks.items()}
    _roi_project(tmp_path / "src", labels)
    assert _invoke(tmp_path / "src" / "images", tmp_path / "src" / "rois", "--out", tmp_path / "raw").exit_code == 0
    for name, mask in masks.items():
        back = read_mask(tmp_path / "raw" / "masks" / f"{name}.tif")
        np.testing.assert_array_equal(back, labels[name] > 0, err_msg=f"{name}: every predicted pixel comes back")
        near_boundary = ndimage.binary_dilation(mask & ~ndimage.binary_erosion(mask))
        assert not ((back != mask) & ~near_boundary).any(), f"{name}: only specks under min_area are lost"
        before, after = label(mask, connectivity=1), label(back, connectivity=1)
        links = {(int(a), int(b)) for a, b in zip(before[back], after[back], strict=True)}
        assert len({a for a, _ in links}) == len(links) == len({b for _, b in links}), f"{name}: merged or split"


def test_touching_particles_and_a_one_pixel_gap_survive_a_roiset(tmp_path):
    labels = np.zeros((24, 24), np.uint16)
    labels[2:10, 2:8], labels[2:10, 8:14] = 1, 2  # touching: one blob in the mask, as before
    labels[2:10, 15:21] = 3  # one background column away from 2
    labels[14:20, 4:9] = 4
    _roi_project(tmp_path / "src", {"a": labels})
    assert _invoke(tmp_path / "src" / "images", tmp_path / "src" / "rois", "--out", tmp_path / "raw").exit_code == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "raw" / "masks" / "a.tif"), labels > 0)


def _image_only(src, name):
    """A 32 x 32 image whose mask is still to be drawn as ROIs."""
    src.mkdir()
    _good_pair(src, name)
    (src / "masks" / f"{name}.tif").unlink()


def test_a_single_roi_file_is_a_mask_and_oval_rois_fill_as_in_imagej(tmp_path):
    from roifile import ROI_TYPE, ImagejRoi, roiwrite

    _image_only(tmp_path / "src", "a")
    oval = ImagejRoi(roitype=ROI_TYPE.OVAL, left=4, top=4, right=12, bottom=12, name="nc")
    roiwrite(tmp_path / "src" / "masks" / "a.roi", oval)
    assert _invoke(tmp_path / "src" / "images", tmp_path / "src" / "masks", "--out", tmp_path / "raw").exit_code == 0
    mask = read_mask(tmp_path / "raw" / "masks" / "a.tif")
    assert mask[8, 8] and not mask[4, 4] and mask.sum() == pytest.approx(np.pi * 16, rel=0.15)


ROI_PROBLEMS = {
    "a line among the particles": (
        lambda roi: [roi("line", [[0, 0], [9, 9]], "ruler")],
        "a.zip:ruler.roi: line ROI, encloses no area",
    ),
    "a point marking a missed NC": (
        lambda roi: [roi("point", [[5, 5]], "missed")],
        "a.zip:missed.roi: point ROI, encloses no area",
    ),
    "a RoiSet of a larger image": (
        lambda roi: [roi(None, [[40, 40], [50, 40], [50, 50]], "far")],
        "ROIs outside the 32 x 32 px image: far; a RoiSet of another image?",
    ),
}


@pytest.mark.parametrize("case", sorted(ROI_PROBLEMS))
def test_a_roiset_that_cannot_be_a_mask_is_refused_naming_the_roi(tmp_path, case):
    from roifile import ROI_TYPE, ImagejRoi, roiwrite

    def roi(kind, points, name):
        made = ImagejRoi.frompoints(np.asarray(points, np.float32), name=name)
        if kind is not None:
            made.roitype = ROI_TYPE[kind.upper()]
        return made

    _image_only(tmp_path / "src", "a")
    extra, message = ROI_PROBLEMS[case]
    square = roi(None, [[4, 4], [12, 4], [12, 12], [4, 12]], "1")
    roiwrite(tmp_path / "src" / "masks" / "a.zip", [square, *extra(roi)])
    result = _invoke(tmp_path / "src" / "images", tmp_path / "src" / "masks", "--out", tmp_path / "raw")
    assert result.exit_code != 0 and f"{tmp_path / 'src' / 'masks' / 'a.zip'}:" in _said(result)
    assert message in _said(result), result.output
    assert not (tmp_path / "raw").exists()


def test_an_empty_roiset_is_an_image_without_ncs(tmp_path):
    _roi_project(tmp_path / "src", {"a": np.zeros((16, 16), np.uint16)})
    _good_pair(tmp_path / "src", "b")  # a raster mask beside it
    (tmp_path / "src" / "masks" / "b.tif").rename(tmp_path / "src" / "rois" / "b.tif")
    result = _invoke(tmp_path / "src" / "images", tmp_path / "src" / "rois", "--out", tmp_path / "raw")
    assert result.exit_code == 0 and "rois/a.zip: holds no ROI; imported as an image without NCs" in _said(result)
