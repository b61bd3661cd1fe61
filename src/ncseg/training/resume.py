"""Finished folds kept on disk, so a long cross-validation that stops part-way resumes where it stopped.

The real-data study is 15-30 fold trainings of ~15 min each on 2 AVX2 cores: hours that a closed laptop, a machine
taken back or a Ctrl-C can end. With `paths.fold_cache` set, every trained fold leaves its network, its out-of-fold
probabilities, its learning curve and its fold parameters in a folder of their own; a later run of the same CV
takes them instead of training again, and ends with the numbers one uninterrupted run gives (a fold's training
depends on nothing but its seed, the settings, the data and the code).

So the folder is keyed by a hash of all of these: the model's settings and the study's `train`, `inference`,
`cv`, `labels` and seed; every training image as the networks see it (normalised views, masks, class maps,
groups after the leak-free joins); the precision this machine trains and predicts in (bf16 and fp32 train apart);
the torch version; and every source file of ncseg. Change any of them and the key changes: old folds are never
mixed into a new study. A study run over several sessions therefore runs one checkout of ncseg throughout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
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

    def get(self, repeat: int, fold: int) -> Fold | None:
        """The fold as a finished run left it, or None where none finished (a half-written fold has no marker)."""
        folder = self._fold(repeat, fold)
        if not (folder / DONE).is_file():
            return None
        meta = json.loads((folder / DONE).read_text())
        with np.load(folder / PROBS) as stored:
            probs = [stored[f"p{i}"] for i in range(len(stored.files))]
        history = [EpochLog(**e) for e in meta["history"]]
        return Fold(folder / WEIGHTS, probs, history, meta["params"])

    def put(self, repeat: int, fold: int, weights: Path, outcome: Outcome) -> None:
        """Keep a finished fold; the marker is written last, so a fold cut off while saving is trained again."""
        probs, history, params = outcome
        folder = self._fold(repeat, fold)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copyfile(weights, folder / WEIGHTS)
        with atomic_path(folder / PROBS) as tmp, tmp.open("wb") as f:
            np.savez(f, **{f"p{i}": p for i, p in enumerate(probs)})
        meta = {"history": [dataclasses.asdict(e) for e in history], "params": params}
        with atomic_path(folder / DONE) as tmp:
            tmp.write_text(json.dumps(meta))

    def _fold(self, repeat: int, fold: int) -> Path:
        return self.folder / f"r{repeat}-f{fold}"


WEIGHTS, PROBS, DONE = "weights.pt", "probs.npz", "done.json"


# Settings a fold's numbers do not depend on: more repeats reuse the folds of the first ones, worker processes
# change the speed only, and CV predicts with torch whatever the served backend
NOT_TRAINING = {"cv": {"repeats"}, "train": {"workers"}, "inference": {"backend"}}


def study_key(spec: NeuralParams, params: Params, samples: list[Sample], runtime: dict) -> str:
    """A hash of everything a fold's training depends on (the module's docstring lists it)."""
    h = hashlib.sha256()
    settings = {
        "model": spec.model_dump(mode="json"),
        "study": params.model_dump(
            mode="json",
            include={"seed", "train", "inference", "cv", "labels"},
            exclude=NOT_TRAINING,
        ),
        "runtime": runtime,
        "torch": torch.__version__,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in samples:
        h.update(f"{s.name}\0{s.group}\0".encode())
        for array in (s.image, s.mask, s.target, s.classes):
            h.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    package = Path(__file__).parents[1]  # src/ncseg
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + path.read_bytes())
    return h.hexdigest()[:16]
