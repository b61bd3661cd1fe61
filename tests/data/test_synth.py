import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import label

from ncseg.data import synth
from ncseg.data.synth import generate, write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(small_params):
    return generate(small_params.data.synth, small_params.seed)


def test_nanocrystals_are_where_the_masks_say(images):
    for item in images:
        inside, outside = item.image[item.mask].mean(), item.image[~item.mask].mean()
        assert inside > 2 * outside, f"{item.name}: NC signal {inside:.0f} vs background {outside:.0f}"
        assert item.image.dtype == np.uint16 and item.mask.dtype == bool


def test_count_and_sizes_follow_the_parameters(params):
    p = params.data.synth
    relative_edges = []
    for item in generate(p, params.seed):
        mean_edge = p.edge_nm * synth.lattice_nm(item.iodide_fraction) / synth.LATTICE_NM["Cl"]
        expected_count = p.coverage * (p.size_px * p.pixel_size_nm) ** 2 / mean_edge**2
        assert abs(len(item.crystals) - expected_count) <= 0.2 * expected_count, item.name
        assert item.mask.mean() == pytest.approx(p.coverage, abs=0.05), item.name
        relative_edges += [c.edge_nm / mean_edge for c in item.crystals]
    assert np.mean(relative_edges) == pytest.approx(1.0, abs=0.03)
    assert np.std(relative_edges) == pytest.approx(p.edge_rel_std, abs=0.02)


def test_single_crystal_regions_have_the_crystal_area(images, small_params):
    px = small_params.data.synth.pixel_size_nm
    for item in images:
        labels = label(item.mask)
        at_centre = [
            labels[min(int(c.y_nm / px), labels.shape[0] - 1), min(int(c.x_nm / px), labels.shape[1] - 1)]
            for c in item.crystals
        ]
        counts = Counter(at_centre)
        for c, region in zip(item.crystals, at_centre, strict=True):
            ys, xs = np.nonzero(labels == region)
            on_border = (
                ys.min() == 0 or xs.min() == 0 or ys.max() == labels.shape[0] - 1 or xs.max() == labels.shape[1] - 1
            )
            if region and counts[region] == 1 and not on_border:
                assert np.sqrt(len(ys)) * px == pytest.approx(c.edge_nm, rel=0.1), (item.name, c)


def test_halide_exchange_grows_the_lattice_and_the_z_contrast():
    assert synth.lattice_nm(0.0) == pytest.approx(0.5605)
    assert synth.lattice_nm(1.0) == pytest.approx(0.6289)
    powers = [synth.perovskite_scattering_per_nm(x) for x in np.linspace(0, 1, 5)]
    assert powers == sorted(powers)
    assert powers[0] > 5 * synth.carbon_scattering_per_nm()


def test_same_seed_same_bytes_other_seed_other_image(small_params, tmp_path):
    p = small_params.data.synth
    for out in ("a", "b"):
        write_dataset(generate(p, 7), tmp_path / out, p.pixel_size_nm)
    files = sorted(q.relative_to(tmp_path / "a") for q in (tmp_path / "a").rglob("*") if q.is_file())
    assert len(files) == 2 * p.n_images + 1
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert not np.array_equal(generate(p, 7)[0].image, generate(p, 8)[0].image)


def test_demo_data_under_dvc_is_what_the_generator_makes(params, tmp_path):
    """data.dvc's files (in the bundled DVC store) are the generator's output for params.yaml, bit for bit."""
    store = ROOT / "dvc-store" / "files" / "md5"
    write_dataset(generate(params.data.synth, params.seed), tmp_path, params.data.synth.pixel_size_nm)
    for f in sorted(q for q in tmp_path.rglob("*") if q.is_file()):
        digest = hashlib.md5(f.read_bytes()).hexdigest()
        assert (store / digest[:2] / digest[2:]).is_file(), f"{f.relative_to(tmp_path)} differs from data.dvc"
