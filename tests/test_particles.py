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


def _odd_shapes(seed: int, side: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of random disks, rotated squares, L shapes, rings, lines and single pixels, overlapping (so cut and
    touching) when crowded, some on the field's edge, one label in two pieces; and a uint16 image."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((side - 8, side), np.int32)
    yy, xx = np.mgrid[: side - 8, :side]
    for k in range(1, count + 1):
        cy, cx, r = rng.uniform(-2, side - 6), rng.uniform(-2, side + 2), rng.uniform(0.5, 9)
        u, v = xx - cx, yy - cy
        angle = rng.uniform(0, np.pi)
        shape = [
            np.hypot(u, v) <= r,
            np.maximum(abs(u * np.cos(angle) + v * np.sin(angle)), abs(v * np.cos(angle) - u * np.sin(angle))) <= r,
            (abs(u) <= r) & (abs(v) <= r) & ((u <= 0) | (v <= 0)),
            (np.hypot(u, v) <= r) & (np.hypot(u, v) >= r / 2),
            (abs(v) < 0.5) & (abs(u) <= r),
            (abs(u) < 0.5) & (abs(v) < 0.5),
        ][k % 6]
        labels[shape] = k
    labels[-2:, 0:3] = labels.max()  # a second piece of the last label
    return labels, rng.integers(0, 60_000, labels.shape).astype(np.uint16)


def _reference(labels: np.ndarray, image: np.ndarray, px: float) -> list[dict]:
    """Straight from the definitions: skimage's regionprops, Feret by brute force over all pixel corners, gaps
    over all pairs of boundary pixels."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import cdist
    from skimage.measure import regionprops
    from skimage.segmentation import find_boundaries

    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    rows = []
    for r in regionprops(labels, intensity_image=image.astype(np.float64)):
        corners = np.unique((r.coords[:, None] + [[0, 0], [0, 1], [1, 0], [1, 1]]).reshape(-1, 2), axis=0)
        vertices = corners[ConvexHull(corners).vertices]  # every pair of them a candidate caliper direction
        directions = (vertices[:, None] - vertices[None]).reshape(-1, 2)
        directions = directions[directions.any(axis=1)]
        normals = np.column_stack([-directions[:, 1], directions[:, 0]]) / np.hypot(*directions.T)[:, None]
        extents = corners @ normals.T
        own, others = (np.argwhere(boundary & m) for m in (labels == r.label, labels != r.label))
        major, minor = r.inertia_tensor_eigvals
        rows.append(
            {
                "label": r.label,
                "area_px": int(r.area),
                "centroid_y_px": r.centroid[0],
                "centroid_x_px": r.centroid[1],
                "bbox": r.bbox,
                "feret_max_nm": cdist(corners, corners).max() * px,
                "feret_min_nm": (extents.max(axis=0) - extents.min(axis=0)).min() * px,
                "aspect_ratio": np.sqrt((major + 1 / 12) / (minor + 1 / 12)),
                "solidity": r.solidity,
                "intensity_mean": r.intensity_mean,
                "nn_gap_nm": (cdist(own, others).min() - 1) * px,
            }
        )
    return rows


@pytest.mark.parametrize(("seed", "side", "count"), [(s, 80, 15) for s in range(6)] + [(s, 160, 8) for s in range(4)])
def test_measure_equals_the_definitions_on_odd_touching_and_sparse_shapes(seed, side, count):
    labels, image = _odd_shapes(seed, side, count)
    particles = measure(labels, 0.5, image)
    reference = _reference(labels, image, 0.5)
    assert [p.label for p in particles] == [r["label"] for r in reference]
    for p, r in zip(particles, reference, strict=True):
        assert (p.bbox_min_row, p.bbox_min_col, p.bbox_max_row, p.bbox_max_col) == r.pop("bbox")
        assert p.area_px == r.pop("area_px") and p.area_nm2 == p.area_px * 0.25
        assert p.intensity_integrated == pytest.approx(r["intensity_mean"] * p.area_px, rel=1e-12)
        assert {k: getattr(p, k) for k in r} == pytest.approx(r, rel=1e-9, abs=1e-12), p.label


def test_the_gap_is_to_the_nearest_particle_when_a_farther_one_lies_closer_to_a_diagonal():
    for d in range(2, 41):  # whichever box around A a search starts in, some d has B inside it and C not
        labels = np.zeros((2 * d + 20, 2 * d + 20), np.int32)
        labels[5:9, 5:9] = 1  # A
        labels[8 + d : 12 + d, 8 + d : 12 + d] = 2  # B: diagonal, boundary centres d, d apart
        reach = int(1.3 * d) + 1
        labels[5:9, 8 + reach : 12 + reach] = 3  # C: beside A, boundary centres `reach` apart
        gaps = {p.label: p.nn_gap_nm for p in measure(labels, 1.0)}
        assert gaps[1] == pytest.approx(min(reach, d * np.sqrt(2)) - 1), d
