"""Near-duplicate images: the copies that separate neighbouring tomogram slices (a small shift, a flip or turn, fresh
noise) are found; different images of one kind of specimen are not."""

from __future__ import annotations

import numpy as np
import pytest

from ncseg.config import LEAK_THRESHOLD, load_params
from ncseg.data import leaks
from ncseg.data.leaks import leak_free_groups, near_duplicates, signatures, similarity
from ncseg.data.synth import generate

from ..conftest import ROOT

SIDE = 160  # px of the synthetic fields; copies are 144 px crops of them
CROP = 144


def distinct_images(n: int, seed: int = 3) -> list[np.ndarray]:
    """`n` synthetic HAADF fields of one specimen kind (same NCs, support and dose): different images of the same
    thing, which a leak check must not join."""
    p = load_params(ROOT / "params.yaml", [f"data.synth.n_images={n}", f"data.synth.size_px={SIDE}"])
    return [s.image for s in generate(p.data.synth, seed)]


def view(field: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """A CROP x CROP field of view of `field`, moved by (dy, dx) px: what a neighbouring slice or a re-acquisition
    of the same region records."""
    return field[8 + dy : 8 + dy + CROP, 8 + dx : 8 + dx + CROP]


def near_copies(field: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Copies of view(field) as neighbouring slices differ from it: moved by ~5 % of the side, mirrored, turned,
    and recorded again with fresh noise half as strong as the image's whole contrast (on top of its own)."""
    rng = np.random.default_rng(seed)
    base = view(field).astype(np.float32)
    sigma = 0.5 * base.std()
    return {
        "shifted": view(field, 7, -5),
        "flipped": np.fliplr(view(field)),
        "turned": np.rot90(view(field), 1),
        "re-noised": base + rng.normal(0, sigma, base.shape),
        "moved, transposed and re-noised": view(field, -6, 6).T + rng.normal(0, sigma, base.shape),
    }


def test_shifted_mirrored_turned_and_re_noised_copies_are_found():
    field = distinct_images(1)[0]
    copies = near_copies(field)
    sim = similarity(signatures([view(field), *copies.values()]))
    found = {p.b: p.similarity for p in near_duplicates(sim, LEAK_THRESHOLD, among=True) if p.a == 0}
    missed = [f"{kind} (r = {sim[0, k]:.3f})" for k, kind in enumerate(copies, 1) if k not in found]
    assert not missed, f"copies not found at {LEAK_THRESHOLD}: {missed}"


def test_different_images_of_one_specimen_kind_are_not_near_duplicates():
    """Twelve fields of the same NCs on the same support at the same dose: similar statistics, other particles."""
    images = [view(f) for f in distinct_images(12)]
    sim = similarity(signatures(images))
    off_diagonal = sim[~np.eye(len(images), dtype=bool)]
    assert off_diagonal.max() < LEAK_THRESHOLD - 0.15, f"distinct images correlate up to {off_diagonal.max():.3f}"
    found = leak_free_groups(images, [f"g{i}" for i in range(12)], LEAK_THRESHOLD)
    assert found.groups == tuple(f"g{i}" for i in range(12)) and not found.joined and not found.pairs


def test_groups_linked_by_a_chain_of_near_copies_join_and_the_others_keep_their_names():
    f = distinct_images(5)
    images = [view(f[0]), near_copies(f[0])["shifted"], view(f[1]), near_copies(f[1])["turned"], view(f[2])]
    images += [view(f[3]), np.rot90(view(f[3])), view(f[4])]  # a rotated copy inside its own group links nothing
    groups = ["a", "b", "b", "c", "d", "e", "e", "f"]
    found = leak_free_groups(images, groups, LEAK_THRESHOLD)
    assert found.groups == ("a+b+c", "a+b+c", "a+b+c", "a+b+c", "d", "e", "e", "f")
    assert found.joined == (("a", "b", "c"),)
    assert {(p.a, p.b) for p in found.pairs} == {(0, 1), (2, 3)}, "pairs across groups only"
    assert found.record([f"im{i}" for i in range(8)])["joined_groups"] == [["a", "b", "c"]]


def test_null_threshold_keeps_the_datas_groups_without_comparing_anything(monkeypatch):
    monkeypatch.setattr(leaks, "similarity", lambda *_: pytest.fail("compared images with the check switched off"))
    found = leak_free_groups([np.zeros((8, 8))] * 2, ["a", "b"], None)
    assert found == leaks.LeakFreeGroups(("a", "b"), (), (), None)


def test_pairs_are_the_same_whatever_the_blocks_the_products_are_cut_into(monkeypatch):
    f = distinct_images(6)
    sigs = signatures([view(x) for x in f] + [near_copies(f[0])["flipped"], near_copies(f[5])["shifted"]])
    whole = similarity(sigs)
    monkeypatch.setattr(leaks, "BLOCK", 3)
    blocks = similarity(sigs)
    np.testing.assert_allclose(blocks, whole, atol=1e-5)
    np.testing.assert_allclose(blocks, blocks.T)
    assert {(p.a, p.b) for p in near_duplicates(blocks, LEAK_THRESHOLD, among=True)} == {(0, 6), (5, 7)}
    upper = np.triu(np.ones((6, 8), bool))  # among a set, pair (i, j > i) is i's centre against j's windows
    np.testing.assert_allclose(similarity(sigs[:6], sigs)[upper], whole[:6][upper], atol=1e-5)
