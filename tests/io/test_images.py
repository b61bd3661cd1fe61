import tracemalloc

import numpy as np
import pytest
import tifffile

from ncseg.io.images import (
    ImageError,
    read_class_map,
    read_image,
    read_mask,
    write_class_map,
    write_mask,
    write_tiff,
)

from ..serving.test_model import tiff_declaring


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.uint32])
def test_tiff_round_trip_keeps_pixels_and_pixel_size(tmp_path, dtype):
    data = (np.arange(48 * 64).reshape(48, 64) % 251).astype(dtype)
    write_tiff(tmp_path / "a.tif", data, pixel_size_nm=0.25)
    image = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size_nm == pytest.approx(0.25)
    assert list(tmp_path.iterdir()) == [tmp_path / "a.tif"], "no temp file may be left behind"


def test_a_class_map_keeps_its_ids_and_pixel_size_and_carries_the_classes_colours(tmp_path):
    """Fiji shows id i in colours[i] (a single-channel image takes the TIFF ColorMap, ImageJ keeps the high byte
    of each entry); the same table is in ImageJ's LUTs metadata; ids past the colours are black."""
    class_map = (np.arange(40 * 56).reshape(40, 56) % 5).astype(np.uint8)  # ids 0-4, colours for 0-2 only
    colours = ["#000000", "#ffd700", "#1E90FF"]
    write_class_map(tmp_path / "c.tif", class_map, colours, pixel_size_nm=0.4)
    image = read_image(tmp_path / "c.tif")
    assert image.data.dtype == np.uint8
    np.testing.assert_array_equal(image.data, class_map)
    assert image.pixel_size_nm == pytest.approx(0.4)
    np.testing.assert_array_equal(read_class_map(tmp_path / "c.tif", class_map.shape), class_map)
    rgb = [(0, 0, 0), (255, 215, 0), (30, 144, 255)]
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        lut = np.asarray(tif.imagej_metadata["LUTs"]).reshape(-1, 3, 256)[0]  # tifffile unwraps a list of one
        colormap = tif.pages.first.colormap
    for i, colour in enumerate(rgb):
        assert tuple(lut[:, i]) == colour, f"class {i}"
        assert tuple(colormap[:, i] >> 8) == colour, f"class {i} in the ColorMap"
    assert not lut[:, len(colours) :].any() and not colormap[:, len(colours) :].any(), "ids past the colours: black"
    assert list(tmp_path.iterdir()) == [tmp_path / "c.tif"], "no temp file may be left behind"


@pytest.mark.parametrize(
    ("class_map", "colours", "problem"),
    [
        (np.full((4, 4), 256, np.uint16), ["#000000"], "0-255"),
        (np.zeros((4, 4), np.float32), ["#000000"], "integer"),
        (np.zeros((4, 4), np.uint8), ["black"], "#rrggbb"),
    ],
)
def test_a_class_map_that_cannot_be_written_is_refused(tmp_path, class_map, colours, problem):
    with pytest.raises(ValueError, match=problem):
        write_class_map(tmp_path / "c.tif", class_map, colours, None)
    assert not list(tmp_path.iterdir())


def test_pixel_size_from_imagej_micron_unit(tmp_path):
    tifffile.imwrite(
        tmp_path / "um.tif",
        np.zeros((8, 8), np.uint16),
        imagej=True,
        resolution=(500.0, 500.0),
        metadata={"unit": "micron"},
    )
    assert read_image(tmp_path / "um.tif").pixel_size_nm == pytest.approx(2.0)


def test_pixel_size_from_centimetre_resolution_tag(tmp_path):
    tifffile.imwrite(
        tmp_path / "cm.tif", np.zeros((8, 8), np.uint8), resolution=(2e7, 2e7), resolutionunit="CENTIMETER"
    )
    assert read_image(tmp_path / "cm.tif").pixel_size_nm == pytest.approx(0.5)


def test_uncalibrated_inch_tiff_has_no_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "dpi.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    assert read_image(tmp_path / "dpi.tif").pixel_size_nm is None


def test_png_greyscale_is_read(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "a.png", np.full((10, 12), 7, np.uint8))
    assert read_image(tmp_path / "a.png").data.shape == (10, 12)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: tifffile.imwrite(p, np.zeros((2, 8, 8), np.uint8), photometric="minisblack"), "multi-page"),
        (lambda p: tifffile.imwrite(p, np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)), "RGB"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"II*\x00garbage"), "unreadable"),
        (lambda p: tifffile.imwrite(p, np.full((8, 8), np.nan, np.float32)), "NaN"),
    ],
)
def test_bad_images_are_refused_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "bad.tif"
    make(path)
    with pytest.raises(ImageError, match=problem) as err:
        read_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("side", "problem"),
    [
        (60000, "60000x60000 px exceeds the limit of 1073741824 px"),
        (20000, r"declares 20000x20000 px, which take at least 775,194 bytes as stored, but the file has \d+"),
    ],
)
def test_a_tiny_tiff_declaring_a_huge_image_is_refused_before_decoding_allocates(tmp_path, side, problem):
    """A ~220-byte zlib TIFF can declare gigabytes of pixels (6.7 GiB at 60000²); reading it for `data import` or
    `data add` must fail from its header, not after allocating what it declares."""
    path = tmp_path / "bomb.tif"
    path.write_bytes(tiff_declaring(side, side))
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=problem) as err:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith(f"{path}: ")
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated"


def test_a_truncated_uncompressed_tiff_is_refused_as_such(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.zeros((1024, 1024), np.uint16))
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(
        ImageError, match="1024x1024 px, which take at least 2,097,152 bytes as stored, but the file has 4,096"
    ):
        read_image(path)


def test_masks_accept_imagej_and_01_conventions(tmp_path):
    mask = np.zeros((6, 6), bool)
    mask[1:3, 2:5] = True
    write_mask(tmp_path / "m.tif", mask, None)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)
    assert set(np.unique(tifffile.imread(tmp_path / "m.tif")).tolist()) == {0, 255}
    tifffile.imwrite(tmp_path / "m01.tif", mask.astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "m01.tif"), mask)


def test_non_binary_mask_is_refused_unless_labels_are_named(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    tifffile.imwrite(tmp_path / "l.tif", labels)
    with pytest.raises(ImageError, match="not binary"):
        read_mask(tmp_path / "l.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.tif", frozenset({2})), labels == 2)
