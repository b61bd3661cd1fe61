"""Finished folds kept on disk, so a long cross-validation that stops part-way resumes where it stopped.

The real-data study is 15-30 fold trainings of ~15 min each on 2 AVX2 cores: hours that a closed laptop, a machine
taken back or a Ctrl-C can end. With `paths.fold_cache` set, every trained fold leaves its network, its out-of-fold
probabilities, its learning curve and its fold parameters in a folder of their own; a later run of the same CV
takes them instead of training again, and ends with the numbers one uninterrupted run gives (a fold's training
depends on nothing but its seed, the settings, the data and the code).

So the folder is keyed by a hash of all of these: the model's settings and every study setting a fold reads
(all but paths, data synthesis, augmentation, the other models, calibration, registry, particles and tracking;
the data is hashed as the networks see it instead: normalised views, masks, class maps, groups after the
leak-free joins); the precision this machine trains and predicts in (bf16 and fp32 train apart), its CPU's
instruction set (oneDNN's AVX2 and AVX-512 kernels round apart) and the versions of the libraries that compute or
draw (torch, numpy, albumentations, OpenCV, smp, timm); and every source file of ncseg. Change any of them and the
key changes: old folds are never mixed into a new study. A study run over several sessions therefore runs one
checkout of ncseg throughout, on one kind of CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncseg.config import NeuralParams, Params
from ncseg.data.dataset import Sample
from ncseg.io.atomic import atomic_path
from ncseg.metrics import EpochLog

FoldParams = dict[str, str | int]
Outcome = tuple[list[np.ndarray], list[EpochLog], FoldParams]  # a trained fold's test probabilities, epochs, params


@dataclass(frozen=True)
class Fold:
    """What a finished fold leaves: its network's file, its test images' probabilities in test order, its epochs."""

    weights: Path
    probs: list[np.ndarray]
    history: list[EpochLog]
    params: FoldParams


@dataclass(frozen=True)
class FoldStore:
    """The finished folds of one model's CV under one key (`paths.fold_cache/<model>/<key>/r<repeat>-f<fold>/`)."""

    folder: Path

    @classmethod
    def open(
        cls, root: Path | None, name: str, spec: NeuralParams, params: Params, samples: list[Sample], runtime: dict
    ) -> FoldStore | None:
        """The store of this exact CV, or None where `paths.fold_cache` is off."""
        if root is None:
            return None
        return cls(root / name / study_key(spec, params, samples, runtime))

    def get(self, repeat: int, fold: int, n_test: int) -> Fold | None:
        """The fold as a finished run left it, or None where none finished (a half-written fold has no marker) or
        what it left is damaged (then it is removed and trained again, with a warning)."""
        folder = self._fold(repeat, fold)
        if not (folder / DONE).is_file():
            return None
        try:
            meta = json.loads((folder / DONE).read_text())
            with np.load(folder / PROBS) as stored:
                probs = [stored[f"p{i}"] for i in range(n_test)]
            if len(stored.files) != n_test or not (folder / WEIGHTS).is_file():
                raise ValueError(f"{len(stored.files)} test images kept, {n_test} expected, or no weights")
            history = [EpochLog(**e) for e in meta["history"]]
            return Fold(folder / WEIGHTS, probs, history, meta["params"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            log.warning("%s: a kept fold is damaged (%s); training it again", folder, err)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def put(self, repeat: int, fold: int, weights: Path, outcome: Outcome) -> None:
        """Keep a finished fold; the marker is written last, so a fold cut off while saving is trained again."""
        probs, history, params = outcome
        folder = self._fold(repeat, fold)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copyfile(weights, folder / WEIGHTS)
        with (folder / PROBS).open("wb") as f:
            np.savez(f, **{f"p{i}": p for i, p in enumerate(probs)})
        for path in (folder / WEIGHTS, folder / PROBS):  # on disk before the marker says the fold is whole
            _sync(path)
        meta = {"history": [dataclasses.asdict(e) for e in history], "params": params}
        with atomic_path(folder / DONE) as tmp:
            tmp.write_text(json.dumps(meta))

    def _fold(self, repeat: int, fold: int) -> Path:
        return self.folder / f"r{repeat}-f{fold}"


WEIGHTS, PROBS, DONE = "weights.pt", "probs.npz", "done.json"
log = logging.getLogger(__name__)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# What a fold's training never reads (the data is hashed as the networks see it, so `data` and `augment` too);
# every other setting is in the key, so a new one is in it by default. More repeats reuse the first ones' folds,
# worker processes change the speed only, and CV predicts with torch whatever the served backend.
NOT_TRAINING = {
    "profile": True,  # its name: what it changes is in the settings already
    "paths": True,
    "data": True,
    "augment": True,
    "models": True,
    "calibration": True,
    "registry": True,
    "particles": True,
    "tracking": True,
    "cv": {"repeats"},
    "train": {"workers"},
    "inference": {"backend"},
}
LIBRARIES = ("torch", "numpy", "albumentations", "opencv-python-headless", "segmentation-models-pytorch", "timm")


def study_key(spec: NeuralParams, params: Params, samples: list[Sample], runtime: dict[str, str]) -> str:
    """A hash of everything a fold's training depends on (the module's docstring lists it)."""
    h = hashlib.sha256()
    settings = {
        "model": spec.model_dump(mode="json"),
        "study": params.model_dump(mode="json", exclude=NOT_TRAINING),
        "runtime": runtime | {"cpu": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()},
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in samples:
        h.update(f"{s.name}\0{s.group}\0".encode())
        for array in (s.image, s.mask, s.target, s.classes):
            h.update(b"-" if array is None else np.ascontiguousarray(array).data)
    package = Path(__file__).parents[1]  # src/ncseg
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + path.read_bytes())
    return h.hexdigest()[:16]


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
