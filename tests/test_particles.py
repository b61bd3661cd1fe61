import numpy as np
import pytest

from ncseg.config import ParticleParams
from ncseg.particles import measure, split

PARAMS = ParticleParams(min_area_nm2=4.0, min_distance_nm=3.0)


def test_touching_squares_are_split_and_measured_in_nm():
    mask = np.zeros((60, 80), bool)
    mask[10:30, 10:30] = True
    mask[10:30, 31:51] = True
    mask[19:21, 30] = True  # a thin bridge: one connected blob, two NCs
    labels = split(mask, pixel_size_nm=0.5, p=PARAMS)
    particles = measure(labels, 0.5)
    assert len(particles) == 2
    for p in particles:
        assert p.edge_length_nm == pytest.approx(10.0, rel=0.05)
        assert p.area_nm2 == pytest.approx(p.area_px * 0.25)
        assert not p.touches_border


def test_specks_are_dropped_and_border_particles_flagged():
    mask = np.zeros((40, 40), bool)
    mask[0:10, 5:15] = True
    mask[30, 30] = True
    particles = measure(split(mask, 1.0, PARAMS), 1.0)
    assert len(particles) == 1 and particles[0].touches_border


def test_uncalibrated_images_report_px_only():
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    (p,) = measure(split(mask, None, PARAMS), None)
    assert p.area_px == 25 and p.area_nm2 is None and p.edge_length_nm is None


def test_a_square_has_the_feret_diameters_of_its_pixel_outline_and_aspect_ratio_one():
    labels = np.zeros((40, 40), np.int32)
    labels[5:25, 8:28] = 1  # 20 px = 10 nm at 0.5 nm/px
    (p,) = measure(labels, 0.5)
    assert p.feret_max_nm == pytest.approx(10 * np.sqrt(2))  # the diagonal
    assert p.feret_min_nm == pytest.approx(10.0) == pytest.approx(p.edge_length_nm)
    assert p.aspect_ratio == pytest.approx(1.0) and p.solidity == pytest.approx(1.0)


def test_a_rectangle_and_a_one_pixel_line_have_their_exact_aspect_ratios():
    labels = np.zeros((60, 60), np.int32)
    labels[5:15, 5:45] = 1  # 10 x 40 px
    labels[30, 5:25] = 2  # 1 x 20 px
    rect, line = measure(labels, 1.0)
    assert rect.aspect_ratio == pytest.approx(4.0) and line.aspect_ratio == pytest.approx(20.0)
    assert rect.feret_max_nm == pytest.approx(np.hypot(10, 40)) and rect.feret_min_nm == pytest.approx(10.0)
    assert line.feret_max_nm == pytest.approx(np.hypot(1, 20)) and line.feret_min_nm == pytest.approx(1.0)


def test_a_merged_pair_has_low_solidity():
    labels = np.zeros((60, 60), np.int32)
    labels[10:30, 10:30] = 1
    labels[25:45, 28:48] = 1  # two squares overlapping at a corner: one blob, concave where they meet
    (p,) = measure(labels, 1.0)
    assert p.solidity < 0.9


def test_intensities_are_the_raw_image_values_inside_each_particle():
    labels = np.zeros((30, 30), np.int32)
    labels[2:7, 2:7] = 1
    labels[10:20, 10:20] = 2
    image = np.full((30, 30), 50, np.uint16)
    image[labels == 1] = 1000
    image[10:20, 10:15] = 3000
    image[10:20, 15:20] = 1000  # half and half: mean 2000
    small, big = measure(labels, 0.5, image)
    assert small.intensity_mean == pytest.approx(1000) and small.intensity_integrated == pytest.approx(25_000)
    assert big.intensity_mean == pytest.approx(2000) and big.intensity_integrated == pytest.approx(200_000)
    assert measure(labels, 0.5)[0].intensity_mean is None


def test_the_nearest_neighbour_gap_is_edge_to_edge_in_nm():
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 5:15] = 1
    labels[10:20, 19:29] = 2  # 4 background columns (15..18) between 1 and 2
    labels[10:20, 29:39] = 3  # touches 2
    labels[30:35, 50:55] = 4  # far from all: its nearest is 3, rows 20..29 and columns 39..49 apart
    gaps = {p.label: p.nn_gap_nm for p in measure(labels, 0.5)}
    assert gaps[1] == pytest.approx(4 * 0.5)
    assert gaps[2] == gaps[3] == pytest.approx(0.0)
    assert gaps[4] == pytest.approx((np.hypot(30 - 19, 50 - 38) - 1) * 0.5)


def test_a_lone_particle_has_no_gap_and_uncalibrated_shapes_stay_unitless():
    labels = np.zeros((20, 20), np.int32)
    labels[5:10, 5:15] = 1
    (p,) = measure(labels, None)
    assert p.nn_gap_nm is None and p.feret_max_nm is None and p.aspect_ratio == pytest.approx(2.0)
