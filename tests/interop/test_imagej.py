"""ImageJ round trip: particles -> RoiSet -> mask gives back every pixel, touching particles stay apart."""

import struct
import time
import zipfile

import numpy as np
import pytest
from roifile import ROI_TYPE, ImagejRoi, roiread, roiwrite
from scipy.ndimage import binary_fill_holes
from skimage.measure import label

from ncseg.interop.imagej import labels_to_rois, outline, read_rois, rois_to_labels, write_roiset
from ncseg.io.images import ImageError
from ncseg.particles import split


def _round_trip(labels: np.ndarray, tmp_path) -> np.ndarray:
    write_roiset(tmp_path / "rois.zip", labels)
    return rois_to_labels(read_rois(tmp_path / "rois.zip"), labels.shape)


def test_a_square_outline_runs_along_pixel_edges():
    region = np.zeros((5, 6), bool)
    region[1:3, 2:5] = True
    assert outline(region).tolist() == [[2, 1], [5, 1], [5, 3], [2, 3]]


def test_every_particle_comes_back_pixel_for_pixel_and_named_by_its_label(small_raw, small_params, tmp_path):
    from ncseg.io.images import read_mask

    mask = read_mask(small_raw / "masks" / "synth_00.tif")
    labels = split(mask, 0.5, small_params.particles)  # watershed-split: touching NCs share a border
    back = _round_trip(labels, tmp_path)
    names = [roi.name for roi in roiread(tmp_path / "rois.zip")]
    assert names == [str(k) for k in np.unique(labels[labels > 0])]
    for k, name in enumerate(names, 1):
        np.testing.assert_array_equal(back == k, labels == int(name), err_msg=f"particle {name}")


def test_a_prefix_names_the_rois_of_one_class_so_several_classes_share_a_roi_manager(tmp_path):
    labels = np.zeros((20, 20), np.uint16)
    labels[2:6, 2:6], labels[10:15, 8:12] = 1, 3
    assert write_roiset(tmp_path / "pt.zip", labels, prefix="pt-") == 2
    assert [roi.name for roi in roiread(tmp_path / "pt.zip")] == ["pt-1", "pt-3"]
    assert [roi.name for roi in labels_to_rois(labels)] == ["1", "3"], "no prefix: the labels as they were"
    np.testing.assert_array_equal(rois_to_labels(read_rois(tmp_path / "pt.zip"), labels.shape) > 0, labels > 0)


def test_touching_and_diagonal_neighbours_stay_separate_with_their_gap(tmp_path):
    labels = np.zeros((12, 12), np.uint16)
    labels[2:6, 2:5] = 1
    labels[2:6, 5:8] = 2  # shares an edge with 1: no gap to keep, none may appear
    labels[6:9, 8:11] = 3  # touches 2 only at a corner
    labels[9, 2] = 4  # a single pixel
    back = _round_trip(labels, tmp_path)
    np.testing.assert_array_equal(back, labels)


def test_random_blobs_survive_the_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    blobs = label(rng.random((60, 60)) > 0.55, connectivity=1).astype(np.uint16)
    for k in range(1, blobs.max() + 1):  # a polygon has no holes: fill them first
        blobs[binary_fill_holes(blobs == k) & (blobs == 0)] = k
    back = _round_trip(blobs, tmp_path)
    assert np.array_equal(back > 0, blobs > 0)
    assert len(np.unique(back)) == len(np.unique(blobs))


def test_an_image_without_particles_writes_an_empty_roiset(tmp_path):
    assert write_roiset(tmp_path / "none.zip", np.zeros((8, 8), np.uint16)) == 0
    assert not _round_trip(np.zeros((8, 8), np.uint16), tmp_path).any()


def test_a_roiset_with_lines_or_points_is_refused_naming_them(tmp_path):
    square = ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5], [1, 5]], np.float32), name="nc-1")
    line = ImagejRoi.frompoints(np.array([[0, 0], [4, 4]], np.float32), name="scale")
    line.roitype = ROI_TYPE.LINE
    point = ImagejRoi.frompoints(np.array([[3, 3]], np.float32), name="seed")
    point.roitype = ROI_TYPE.POINT
    roiwrite(tmp_path / "mixed.zip", [square, line, point])
    with pytest.raises(ImageError) as refused:
        read_rois(tmp_path / "mixed.zip")
    assert [line.strip() for line in str(refused.value).splitlines()[1:]] == [
        f"{tmp_path / 'mixed.zip'}:scale.roi: line ROI, encloses no area",
        f"{tmp_path / 'mixed.zip'}:seed.roi: point ROI, encloses no area",
    ]


def test_hand_drawn_polygons_fill_by_pixel_centres_as_imagej_does(tmp_path):
    triangle = ImagejRoi.frompoints(np.array([[0, 0], [4.2, 0], [0, 4.2]], np.float32), name="t")
    roiwrite(tmp_path / "t.roi", triangle)
    filled = rois_to_labels(read_rois(tmp_path / "t.roi"), (5, 5)) > 0
    centres_inside = np.array([[x + 0.5 + y + 0.5 < 4.2 for x in range(5)] for y in range(5)])
    np.testing.assert_array_equal(filled, centres_inside)


def _square(name: str) -> ImagejRoi:
    return ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5], [1, 5]], np.float32), name=name)


def _box(kind: ROI_TYPE, left: int, top: int, right: int, bottom: int, name: str) -> ImagejRoi:
    roi = ImagejRoi(roitype=kind, left=left, top=top, right=right, bottom=bottom, name=name)
    return ImagejRoi.frombytes(roi.tobytes())  # as read from a file


def _without_coordinates(roi: ImagejRoi) -> bytes:
    """A polygon ROI whose 16-bit coordinate count (header byte 16) says 0: what a truncated save leaves."""
    data = bytearray(roi.tobytes())
    data[16:18] = b"\x00\x00"
    return bytes(data)


def test_a_polygon_without_coordinates_is_refused_naming_its_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        archive.writestr("nc-1.roi", _square("nc-1").tobytes())
        archive.writestr("nc-2.roi", _without_coordinates(_square("nc-2")))
    expected = rf"{tmp_path / 'set.zip'}:nc-2\.roi: freehand ROI, covers no pixel centre \(0 coordinates\)"
    with pytest.raises(ImageError, match=expected):
        read_rois(tmp_path / "set.zip")


def test_zero_area_rois_are_refused_each_on_its_own_line(tmp_path):
    """A flat rectangle or oval, or a polygon whose points lie on one line, fills no pixel: a slip in the ROI
    Manager, refused like lines and points rather than dropped from the mask unseen."""
    flat = ImagejRoi.frompoints(np.array([[1, 1], [3, 3], [6, 6]], np.float32), name="flat")
    rois = [_square("nc-1"), flat, _box(ROI_TYPE.RECT, 2, 2, 6, 2, "thin"), _box(ROI_TYPE.OVAL, 1, 1, 1, 5, "dot")]
    roiwrite(tmp_path / "set.zip", rois)
    with pytest.raises(ImageError) as refused:
        read_rois(tmp_path / "set.zip")
    lines = str(refused.value).splitlines()
    assert [line.strip() for line in lines[1:]] == [
        f"{tmp_path / 'set.zip'}:flat.roi: freehand ROI, covers no pixel centre (3 coordinates)",
        f"{tmp_path / 'set.zip'}:thin.roi: rect ROI, covers no pixel centre (4 x 0 px)",
        f"{tmp_path / 'set.zip'}:dot.roi: oval ROI, covers no pixel centre (0 x 4 px)",
    ]


def test_a_member_that_is_no_roi_is_named_with_its_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        archive.writestr("nc-1.roi", _square("nc-1").tobytes())
        archive.writestr("notes.txt", b"corrected by A.B., 3 May")
    with pytest.raises(ImageError, match=rf"{tmp_path / 'set.zip'}:notes\.txt: not an ImageJ ROI"):
        read_rois(tmp_path / "set.zip")


def _zip_of_copies(path, data: bytes, n: int) -> None:
    """A zip of n stored members holding the same bytes, written directly (zipfile takes 1.5 s for 65 536), with
    the zip64 end records that a zip of more than 65 535 members has."""
    crc, size, offset = zipfile.crc32(data), len(data), 0
    local, central = [], []
    for k in range(n):
        name = f"{k}.roi".encode()
        local.append(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, size, size, len(name), 0) + name)
        local.append(data)
        header = struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, size, size, len(name), 0, 0, 0, 0, 0, offset
        )
        central.append(header + name)
        offset += len(local[-2]) + size
    directory = b"".join(central)
    end64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(directory), offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, offset + len(directory), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(b"".join(local) + directory + end64 + locator + end)


def test_a_roiset_of_more_rois_than_a_label_image_holds_is_refused_before_decoding(tmp_path):
    """65 536 ROIs overflowed the uint16 label image (OverflowError); the count is checked on the zip's
    directory, before a member is decoded."""
    _zip_of_copies(tmp_path / "many.zip", _square("nc").tobytes(), 65536)
    with pytest.raises(ImageError, match=r"many\.zip: 65536 members; a RoiSet holds at most 65535 ROIs"):
        read_rois(tmp_path / "many.zip")


def test_a_roiset_that_unpacks_to_more_than_the_limit_is_refused_before_decoding(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nc-1.roi", _square("nc-1").tobytes())
        archive.writestr("nc-2.roi", bytes(65 * 2**20))  # 64 KB on disk
    with pytest.raises(ImageError, match=r"bomb\.zip: 65\.0 MiB of ROIs unpacked; a RoiSet may hold 64 MiB"):
        read_rois(tmp_path / "bomb.zip")


def test_an_outline_zigzagging_over_the_image_is_refused_before_it_is_filled(tmp_path):
    """5000 strokes across 2000 rows: 10 million row crossings to sort, counted before any is computed."""
    x = np.linspace(0, 1000, 5000)
    zigzag = np.stack([x, np.where(np.arange(5000) % 2, 2000, 0)], axis=1).astype(np.float32)
    roiwrite(tmp_path / "zigzag.roi", ImagejRoi.frompoints(zigzag, name="zigzag"))
    with pytest.raises(ImageError, match=r"zigzag\.roi: its outlines cross 10000000 pixel rows; a RoiSet may cross"):
        read_rois(tmp_path / "zigzag.roi")


def test_a_freehand_outline_of_many_points_fills_in_a_moment(tmp_path):
    """ImageJ's freehand tool records a point per mouse move: 10 000 of them around a 800 px particle took
    29 s to fill point by point; each pixel row is filled from the outline's crossings."""
    angle = np.linspace(0, 2 * np.pi, 10_000, endpoint=False)
    circle = np.stack([500 + 400 * np.cos(angle), 500 + 400 * np.sin(angle)], axis=1).astype(np.float32)
    roiwrite(tmp_path / "big.roi", ImagejRoi.frompoints(circle, name="big"))
    start = time.perf_counter()
    filled = rois_to_labels(read_rois(tmp_path / "big.roi"), (1000, 1000)) > 0
    assert time.perf_counter() - start < 2
    assert filled.sum() == pytest.approx(np.pi * 400**2, rel=1e-3)


def _imagej_fill(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """ImageJ's PolygonFiller pixel by pixel: inside when a ray from the pixel's centre to the left crosses the
    outline an odd number of times; an edge counts at heights from its upper end (inclusive) to its lower, and a
    centre exactly on an edge is outside a left edge and inside a right one."""
    inside = np.zeros(shape, bool)
    edges = list(zip(points, np.roll(points, 1, axis=0), strict=True))
    for r, c in np.ndindex(shape):
        x, y = c + 0.5, r + 0.5
        crossings = [
            (x1 - x0) * (y - y0) / (y1 - y0) + x0 for (x0, y0), (x1, y1) in edges if min(y0, y1) <= y < max(y0, y1)
        ]
        inside[r, c] = sum(at < x for at in crossings) % 2 == 1
    return inside


@pytest.mark.parametrize("seed", range(20))
def test_filled_pixels_are_those_imagej_fills(seed):
    """Random self-crossing polygons with points on and off the pixel grid, some past the image edge."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-3, 23, (rng.integers(3, 12), 2))
    points[: len(points) // 2] = points[: len(points) // 2].round()  # vertices on pixel corners and edges
    roi = ImagejRoi.frompoints(points.astype(np.float32), name="p")
    expected = _imagej_fill(roi.coordinates().astype(np.float64), (20, 17))
    np.testing.assert_array_equal(rois_to_labels([roi], expected.shape) > 0, expected)


def test_a_diagonal_through_pixel_centres_gives_each_pixel_to_one_roi():
    """Two triangles drawn with the polygon tool share a 45° edge through pixel centres: as in ImageJ, a centre on
    the edge belongs to the ROI whose right edge it is (the first), not to both, the later overwriting."""
    upper = ImagejRoi.frompoints(np.array([[0, 0], [4, 0], [0, 4]], np.float32), name="upper")
    lower = ImagejRoi.frompoints(np.array([[4, 0], [4, 4], [0, 4]], np.float32), name="lower")
    labels = rois_to_labels([upper, lower], (4, 4))
    centres = np.add.outer(np.arange(4), np.arange(4)) + 1  # x + y of each pixel centre
    np.testing.assert_array_equal(labels, np.where(centres <= 4, 1, 2))
