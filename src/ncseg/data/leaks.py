"""Near-duplicate images, so that no near-copy of a test image sits on the training side of a split.

Neighbouring slices of a tomogram, frames of a video, overlapping tiles of a montage or one field imaged twice are
near-copies of each other: filed as separate groups, grouped cross-validation puts one in the test fold and the
other in training, and the score mixes in interpolation between them. Here every pair of images gets a similarity
that is robust to what separates such copies, and groups that share a pair above a threshold are joined before
any split (`leak_free_groups`; `cv.leak_threshold`). `ncseg data check` lists the pairs of a dataset, and those
between a training set and an external test set.

The similarity: each image is area-averaged to a SIDE x SIDE signature once (noise averages away, any bit depth
and size compare); the similarity of two images is the largest Pearson correlation between the centre of one
signature, turned by any of the 8 dihedral turns, and the other signature moved by up to MAX_SHIFT of its side.
All pairs are matrix products of those centres against every shifted window (no Python loop over pairs): 45
images take 0.3 s, 2 000 70-85 s on 2 cores (benchmarks/leaks.md); the time grows with the square of the count.

Why at split time, not a DVC stage of its own: `train` already reads every image, and comparing them costs 0.3 s
for 45 images (a minute for 2 000, against hours of training); a stage would add a record that a hand-run `ncseg
train` after `data augment` could read stale, and every caller of the split (training, the benchmarks that re-plan
it) would need to find it. What was joined is recorded where the split's results are: the CV summary and the MLflow
parent run (ncseg.training.cv).

Why not a library. imagededup's and cleanvision's near-duplicate finders hash 8-bit PIL images (a 16-bit
micrograph is clipped or rescaled first), and a perceptual hash is neither flip- nor turn-invariant nor tolerant of
a shift; cleanvision groups equal hashes only, with no similarity to threshold; imagededup's CNN encoder downloads
ImageNet weights. A correlation is also what a microscopist can read: r = 1 is the same image.

Measured (benchmarks/leaks.md): on the real Pt/alumina patches the pairs of neighbouring slices score 0.95-1.00 and
no pair of images scores between 0.88 and 0.95; 2 000 distinct synthetic images of one kind score at most 0.53. The
default threshold 0.9 sits in that gap. It is a gap of the measure, not a proof of independence: some real pairs at
0.86-0.88 show the same particles a few slices apart, and two slices moved by more than 10 % score lower still.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ncseg.data.groups import read_groups
from ncseg.data.layout import IMAGES
from ncseg.io.images import list_images, read_image

SIDE = 64  # px of a signature
MAX_SHIFT = round(0.1 * SIDE)  # the largest move between two copies, in signature px (10 % of the side)
BLOCK = 64  # images per matrix product: ~120 MB of shifted windows at a time
_INNER = SIDE - 2 * MAX_SHIFT  # side of the centre of one signature compared with windows of the other
_SHIFTS = (2 * MAX_SHIFT + 1) ** 2


@dataclass(frozen=True)
class Pair:
    """Two near-duplicate images (indices into the lists compared) and their similarity."""

    a: int
    b: int
    similarity: float


def signature(image: np.ndarray) -> np.ndarray:
    """The image area-averaged to SIDE x SIDE float32: what every comparison of it uses."""
    return cv2.resize(image.astype(np.float32), (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def signatures(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([signature(im) for im in images]) if images else np.zeros((0, SIDE, SIDE), np.float32)


def similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(len(a), len(b)) similarities of signatures `a` to signatures `b`: each `a` centre against the windows of each
    `b`. Among `a` (`b` None): each pair once, the earlier image's centre against the later one's windows, which
    halves the work and gives the same matrix however the products are cut into blocks."""
    targets = a if b is None else b
    out = np.full((len(a), len(targets)), -1.0, np.float32)
    for j in range(0, len(targets), BLOCK):
        windows = _windows(targets[j : j + BLOCK])
        for i in range(0, j + 1 if b is None else len(a), BLOCK):  # among `a`: the blocks on and above the diagonal
            r = _turned_centres(a[i : i + BLOCK]) @ windows.T  # (images x 8 turns, targets x shifts)
            out[i : i + BLOCK, j : j + BLOCK] = r.reshape(-1, 8, len(windows) // _SHIFTS, _SHIFTS).max(axis=(1, 3))
    return np.triu(out) + np.triu(out, 1).T if b is None else out


def _turned_centres(sigs: np.ndarray) -> np.ndarray:
    """(images x 8, INNER²): each signature's centre in its 8 dihedral turns, as unit vectors of zero mean."""
    centre = sigs[:, MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT]
    turns = [np.rot90(t, k, axes=(1, 2)) for t in (centre, centre.transpose(0, 2, 1)) for k in range(4)]
    return _unit_rows(np.stack(turns, axis=1).reshape(-1, _INNER * _INNER))


def _windows(sigs: np.ndarray) -> np.ndarray:
    """(images x shifts, INNER²): every INNER x INNER window of each signature, as unit vectors of zero mean."""
    views = sliding_window_view(sigs, (_INNER, _INNER), axis=(1, 2))
    return _unit_rows(views.reshape(-1, _INNER * _INNER))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows minus their mean, over their norm: their dot product is then Pearson's r. A flat row stays 0 (r = 0
    with anything: a blank frame is nobody's copy)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def near_duplicates(sim: np.ndarray, threshold: float, among: bool) -> list[Pair]:
    """The pairs at or above `threshold`, most similar first; `among`: `sim` compares a set with itself (each pair
    once, no image with itself)."""
    hits = np.triu(sim >= threshold, 1) if among else sim >= threshold
    pairs = [Pair(int(i), int(j), float(sim[i, j])) for i, j in zip(*np.nonzero(hits), strict=True)]
    return sorted(pairs, key=lambda p: -p.similarity)


@dataclass(frozen=True)
class LeakFreeGroups:
    """The groups a split keeps apart: the data's own, joined wherever a near-duplicate pair links two of them."""

    groups: tuple[str, ...]  # per image: its group, or 'a+b+…' for the data's groups a, b, … joined into one
    joined: tuple[tuple[str, ...], ...]  # each set of the data's groups joined into one (sorted); () when none
    pairs: tuple[Pair, ...]  # the near-duplicate pairs of images in different groups
    threshold: float | None  # None: not looked for

    def record(self, names: Sequence[str]) -> dict:
        """What was joined and why, by image name (the MLflow run's leaks.json)."""
        return {
            "threshold": self.threshold,
            "joined_groups": [list(j) for j in self.joined],
            "pairs": [{"a": names[p.a], "b": names[p.b], "similarity": round(p.similarity, 4)} for p in self.pairs],
        }


def leak_free_groups(images: Sequence[np.ndarray], groups: Sequence[str], threshold: float | None) -> LeakFreeGroups:
    """The groups of `images` joined wherever a pair of them is at least `threshold` similar; None: as they are."""
    if threshold is None:
        return LeakFreeGroups(tuple(groups), (), (), None)
    return join_groups(groups, near_duplicates(similarity(signatures(images)), threshold, among=True), threshold)


def join_groups(groups: Sequence[str], pairs: Sequence[Pair], threshold: float | None) -> LeakFreeGroups:
    """Join the groups that pairs of images link (connected components: a chain of neighbouring slices becomes one
    group). A group no pair touches keeps its name, so data without near-copies splits exactly as before."""
    pairs = [p for p in pairs if groups[p.a] != groups[p.b]]
    names = sorted(set(groups))
    index = {g: k for k, g in enumerate(names)}
    links = coo_matrix(
        ([True] * len(pairs), ([index[groups[p.a]] for p in pairs], [index[groups[p.b]] for p in pairs])),
        shape=(len(names), len(names)),
    )
    _, component = connected_components(links, directed=False)
    members: dict[int, list[str]] = {}
    for name, c in zip(names, component, strict=True):
        members.setdefault(int(c), []).append(name)
    label = {name: "+".join(members[int(c)]) for name, c in zip(names, component, strict=True)}
    joined = tuple(sorted(tuple(m) for m in members.values() if len(m) > 1))
    return LeakFreeGroups(tuple(label[g] for g in groups), joined, tuple(pairs), threshold)


def dataset_images(folder: Path) -> list[Path]:
    """The images of a dataset folder (its images/), or of a plain folder of images; a missing or empty one is
    refused by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    where = folder / IMAGES if (folder / IMAGES).is_dir() else folder
    paths = list_images(where)
    if not paths:
        raise FileNotFoundError(f"{where}: no images (TIFF, PNG, …)")
    return paths


@dataclass(frozen=True)
class Check:
    """`ncseg data check`: near-duplicate pairs inside a training set, and between it and a test set."""

    train: list[Path]
    test: list[Path]
    within: list[Pair]  # a, b: training images
    across: list[Pair]  # a: a test image, b: its near-copy in training
    groups: dict[str, str]  # the training images' groups, where the folder has a groups.csv (a pair in one is fine)


def check(train: Path, test: Path | None, threshold: float) -> Check:
    """Every image read once (an unreadable one is refused by name, as an ImageError); then all pairs."""
    train_paths = dataset_images(train)
    test_paths = dataset_images(test) if test is not None else []
    train_sigs = signatures([read_image(p).data for p in train_paths])
    test_sigs = signatures([read_image(p).data for p in test_paths])
    within = near_duplicates(similarity(train_sigs), threshold, among=True)
    across = near_duplicates(similarity(test_sigs, train_sigs), threshold, among=False)
    return Check(train_paths, test_paths, within, across, read_groups(train))
