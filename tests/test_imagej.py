"""ImageJ round trip: particles -> RoiSet -> mask gives back every pixel, touching particles stay apart."""

import numpy as np
import pytest
from roifile import ROI_TYPE, ImagejRoi, roiread, roiwrite
from scipy.ndimage import binary_fill_holes
from skimage.measure import label

from ncseg.interop.imagej import outline, read_rois, rois_to_labels, write_roiset
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
    with pytest.raises(ImageError, match=r"mixed\.zip: ROIs that enclose no area .*scale \(line\), seed \(point\)"):
        read_rois(tmp_path / "mixed.zip")


def test_hand_drawn_polygons_fill_by_pixel_centres_as_imagej_does(tmp_path):
    triangle = ImagejRoi.frompoints(np.array([[0, 0], [4.2, 0], [0, 4.2]], np.float32), name="t")
    roiwrite(tmp_path / "t.roi", triangle)
    filled = rois_to_labels(read_rois(tmp_path / "t.roi"), (5, 5)) > 0
    centres_inside = np.array([[x + 0.5 + y + 0.5 < 4.2 for x in range(5)] for y in range(5)])
    np.testing.assert_array_equal(filled, centres_inside)
