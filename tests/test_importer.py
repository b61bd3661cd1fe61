import shutil

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.data.augment import read_groups
from ncseg.io.images import read_image, read_mask

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["data", "import", *map(str, args)])


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
    "unreadable": (lambda d: (d / "masks" / "a.tif").write_bytes(b"not a tiff at all"), "a.tif", "unreadable"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_by_name_and_nothing_is_written(tmp_path, case):
    src, out = tmp_path / "src", tmp_path / "raw"
    src.mkdir()
    for name in ("a", "b"):
        _good_pair(src, name)
    out.mkdir()
    (out / "keep.txt").write_text("existing raw data")
    damage, filename, problem = BAD_INPUTS[case]
    damage(src)
    result = _invoke(src / "images", src / "masks", "--out", out, "--force")
    assert result.exit_code != 0
    assert filename in result.output and problem in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"], "the raw folder must be untouched"
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
