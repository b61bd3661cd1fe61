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
