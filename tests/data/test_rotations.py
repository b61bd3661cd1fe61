import numpy as np
import pytest

from ncseg.config import AugmentParams
from ncseg.data.layout import read_manifest
from ncseg.data.rotations import augment, plan
from ncseg.io.images import read_image, read_mask

from ..builders import fail_on_call


def test_twelve_raw_images_become_the_studys_twenty_two(params):
    names = [f"synth_{i:02d}" for i in range(12)]
    entries = plan(names, {}, params.augment, params.seed)
    assert len(entries) == 22
    rotated = [e for e in entries if e.rotation_deg]
    assert len(rotated) == 10 and len({e.source for e in rotated}) == 10
    assert {e.rotation_deg for e in rotated} <= {90, 180, 270}
    assert all(e.group == e.source for e in entries)
    assert plan(names, {}, params.augment, params.seed) == entries, "same seed, same choice"


def test_rotated_copies_match_their_sources_and_share_their_group(small_raw, small_params, tmp_path):
    out = tmp_path / "augmented"
    entries = augment(small_raw, out, small_params.augment, small_params.seed)
    assert read_manifest(out) == entries
    assert len(entries) == small_params.data.synth.n_images + small_params.augment.n_rotated
    for e in entries:
        image, source = (
            read_image(out / "images" / f"{e.name}.tif"),
            read_image(small_raw / "images" / f"{e.source}.tif"),
        )
        k = e.rotation_deg // 90
        np.testing.assert_array_equal(image.data, np.rot90(source.data, k))
        np.testing.assert_array_equal(
            read_mask(out / "masks" / f"{e.name}.tif"), np.rot90(read_mask(small_raw / "masks" / f"{e.source}.tif"), k)
        )
        assert image.pixel_size_nm == pytest.approx(source.pixel_size_nm)
        assert e.group == e.source


def test_group_manifest_carries_into_rotated_copies():
    names = ["a", "b", "c"]
    entries = plan(names, {"a": "slice1", "b": "slice1", "c": "slice2"}, AugmentParams(n_rotated=3, angles=(90,)), 0)
    assert {e.name: e.group for e in entries}["c_rot90"] == "slice2"
    assert {e.group for e in entries if e.source in ("a", "b")} == {"slice1"}


def test_more_rotations_than_images_is_an_error():
    with pytest.raises(ValueError, match="n_rotated"):
        plan(["a"], {}, AugmentParams(n_rotated=2, angles=(90,)), 0)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_augment_leaves_the_previous_set_and_no_staging(
    small_raw, small_params, tmp_path, monkeypatch, failure
):
    from ncseg.data import rotations as module

    out = tmp_path / "augmented"
    augment(small_raw, out, small_params.augment, small_params.seed)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fail_on_call(monkeypatch, module, "write_mask", 3, failure)
    with pytest.raises(failure):
        augment(small_raw, out, small_params.augment, small_params.seed + 1)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["augmented"]
