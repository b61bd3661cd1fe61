"""Per-pixel, per-particle and per-image uncertainty: the spread of views (or one view's 4p(1-p)), measured where it
matters."""

import numpy as np
import pytest

from ncseg.uncertainty import (
    boundary_band,
    class_image_score,
    class_uncertainty,
    image_score,
    one_view_uncertainty,
    particle_scores,
    pixel_uncertainty,
)


def test_pixel_uncertainty_is_twice_the_spread_of_the_views_read_one_at_a_time():
    views = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    streamed = pixel_uncertainty(v for v in views)  # a generator: never all views at once
    np.testing.assert_allclose(streamed, 2 * views.std(axis=0), atol=1e-6)
    assert streamed.dtype == np.float32


def test_views_that_agree_are_certain_and_views_that_split_evenly_are_maximally_uncertain():
    certain = np.full((4, 4), 0.9, np.float32)
    np.testing.assert_allclose(pixel_uncertainty([certain] * 4), 0.0, atol=1e-6)
    split = [np.ones((4, 4)), np.zeros((4, 4)), np.ones((4, 4)), np.zeros((4, 4))]
    np.testing.assert_allclose(pixel_uncertainty(split), 1.0)


def test_one_view_has_no_spread_and_is_refused():
    with pytest.raises(ValueError, match="at least two views"):
        pixel_uncertainty([np.zeros((3, 3))])


def test_the_boundary_band_is_one_pixel_either_side_of_each_outline():
    labels = np.zeros((12, 12), np.int32)
    labels[2:7, 2:7] = 1
    band = boundary_band(labels)
    inside = np.zeros_like(labels, bool)
    inside[2:7, 2:7] = True
    inside[3:6, 3:6] = False  # the 3x3 core is no boundary
    outside = np.zeros_like(labels, bool)
    outside[1:8, 2:7] = outside[2:7, 1:8] = True  # the 4-connected ring around the square (no corners)
    outside[2:7, 2:7] = False
    np.testing.assert_array_equal(band == 1, inside | outside)


def test_a_one_pixel_gap_between_two_particles_belongs_to_one_of_them():
    labels = np.zeros((5, 9), np.int32)
    labels[1:4, 1:4], labels[1:4, 5:8] = 1, 2
    band = boundary_band(labels)
    assert set(band[1:4, 4].tolist()) == {2}, "the gap column goes to the higher label, once"


def test_particle_scores_read_probability_inside_and_uncertainty_on_the_outline():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8], labels[12:18, 12:18] = 1, 2
    prob = np.where(labels == 1, 0.9, np.where(labels == 2, 0.6, 0.05)).astype(np.float32)
    uncertainty = np.zeros((20, 20), np.float32)
    uncertainty[boundary_band(labels) == 2] = 0.8  # only particle 2's outline is in doubt
    uncertainty[14:16, 14:16] = 1.0  # its core does not count towards the boundary
    scores = particle_scores(labels, prob, uncertainty)
    assert scores[1] == {"confidence": pytest.approx(0.9), "boundary_uncertainty": 0.0}
    assert scores[2] == {"confidence": pytest.approx(0.6), "boundary_uncertainty": pytest.approx(0.8)}


def test_particle_scores_skip_label_numbers_with_no_pixel():
    labels = np.zeros((6, 6), np.int32)
    labels[1:3, 1:3] = 3
    assert list(particle_scores(labels, np.ones((6, 6)), np.zeros((6, 6)))) == [3]


def test_the_image_score_is_the_share_of_the_nc_area_in_doubt():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True  # 50 NC pixels
    doubt = np.zeros((10, 10))
    assert image_score(doubt, mask) == 0.0
    doubt[5, :] = 0.5  # 5 pixels' worth of doubt
    assert image_score(doubt, mask) == pytest.approx(5 / 55)
    larger = mask.copy()
    larger[:8] = True
    assert image_score(doubt, larger) < image_score(doubt, mask), "the same doubt over a larger NC area is less"
    assert image_score(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 0.0, "nothing found, no doubt: 0, not 0/0"
    assert image_score(np.full((4, 4), 0.5), np.zeros((4, 4), bool)) == 1.0, "nothing found amid doubt ranks first"


def test_one_view_is_in_doubt_where_its_probability_is_neither_0_nor_1():
    prob = np.array([[0.0, 0.5, 1.0, 0.9]], np.float32)
    doubt = one_view_uncertainty(prob)
    np.testing.assert_allclose(doubt, [[0.0, 1.0, 0.0, 0.36]], atol=1e-6)
    assert doubt.dtype == np.float32


def test_a_class_maps_uncertainty_is_the_binary_rule_for_two_classes_and_zero_where_one_class_is_certain():
    p = np.random.default_rng(5).random((6, 7)).astype(np.float32)
    assert np.allclose(class_uncertainty(np.stack([1 - p, p])), one_view_uncertainty(p), atol=1e-6)
    sure = np.zeros((3, 2, 2), np.float32)
    sure[2] = 1.0
    torn = np.full((3, 2, 2), 0.1, np.float32)
    torn[1] = torn[2] = 0.45
    assert np.all(class_uncertainty(sure) == 0) and np.allclose(class_uncertainty(torn), 1.0)


def test_a_class_is_in_doubt_only_where_it_is_one_of_the_two_likeliest():
    prob = np.zeros((3, 1, 4), np.float32)
    prob[:, 0, 0] = (0.5, 0.4, 0.1)  # background vs support: no doubt about Pt
    prob[:, 0, 1] = (0.5, 0.1, 0.4)  # background vs Pt
    prob[:, 0, 2] = prob[:, 0, 3] = (0.0, 0.0, 1.0)  # certain Pt
    doubt = class_uncertainty(prob)
    classes = prob.argmax(axis=0).astype(np.uint8)
    pt = class_image_score(doubt, classes, prob, [2])
    assert pt == pytest.approx(doubt[0, 1] / (2 + doubt[0, 1]))
    assert class_image_score(doubt, classes, prob, [1]) == pytest.approx(doubt[0, 0])  # no support: its doubt
