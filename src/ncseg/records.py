"""Every file that passes between stages, as a typed record: one place that knows its fields and its file name.

`train` writes a `ModelCard` (models/<m>/model.json) and a `CVSummary` (metrics/cv/<m>.json), `evaluate` a
`Summary` (metrics/summary.json), `register` a `ServingConfig` (inside the logged model) and a
`RegistryDecision` (metrics/registry.json). Readers get a validated object or a `RecordError` naming the file
and what is wrong with it; writers go through a temp file and a rename. A new field is added here, once.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ncseg.config import TTA, Backend, ModelParams, ParticleParams, Precision, View
from ncseg.io.tables import write_json
from ncseg.labels import LabelSet
from ncseg.metrics import Scores
from ncseg.ood import Domain

SCORE_KEYS = tuple(Scores.__dataclass_fields__)


class RecordError(ValueError):
    """A stage file that is missing, unreadable or not of its record's shape; the message starts with its path."""


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    FILE: ClassVar[str] = ""

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError as err:
            raise RecordError(f"{path}: missing ({cls.__name__}); run the stage that writes it first") from err
        except ValidationError as err:
            raise RecordError(f"{path}: not a valid {cls.__name__}: {err}") from err

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WeightFile(Record):
    file: str  # relative to the model folder
    sha256: str
    # Which CV network it is: repeat r's network of fold k, so readers never reverse its file name.
    repeat: int | None = Field(default=None, ge=0)
    fold: int | None = Field(default=None, ge=0)


class Operating(Record):
    """Where a network's probabilities are cut: the threshold on the calibrated scale and the temperature."""

    threshold: float | None  # None: a K-class model, which decides by the argmax
    temperature: float = Field(gt=0)


class ModelCard(Record):
    """What a model folder holds and how it was validated: the one file register and load_ensemble trust."""

    FILE: ClassVar[str] = "model.json"
    name: str
    spec: ModelParams
    threshold: float | None  # on calibrated probabilities, chosen on all out-of-fold ones; None for a baseline
    temperature: float = 1.0  # the calibration of one network's probabilities (1: none)
    # Every network CV trained, in serving order: fold 0 of each repeat, then fold 1 of each, and so on, so the
    # first `register.members` = cv.repeats networks are the R-network ensemble CV measured. Empty for a baseline.
    folds: tuple[WeightFile, ...]
    repeats: int = Field(default=1, ge=1)
    ensemble: Operating | None = None  # (threshold and) temperature of the R-network ensemble (repeats > 1)
    cv_jaccard_mean: float
    cv_jaccard_std: float
    normalization: tuple[View, ...]  # the input channels, in order
    intensity_window: tuple[float, float] | None  # set where a 'dataset' view is used
    tta: TTA  # the test-time augmentation CV scored (and tuned the threshold) with: the served default
    cv_run_id: str  # the MLflow parent run that measured it
    domain: Domain | None = None  # the training images' pixel sizes and intensities (ncseg.ood); None: older cards
    labels: LabelSet = Field(default_factory=LabelSet.binary)  # what its outputs mean (older cards: binary NCs)

    @model_validator(mode="before")
    @classmethod
    def _placed_by_order(cls, data: Any) -> Any:
        """A card written before networks recorded their repeat and fold lists them in serving order (fold 0 of
        each repeat, then fold 1, ...): that place says which network each is, so an older folder still loads."""
        folds, repeats = (data.get("folds"), data.get("repeats", 1)) if isinstance(data, dict) else (None, None)
        if not folds or not isinstance(repeats, int) or repeats < 1:
            return data  # nothing to place, or a `repeats` its own validation will name
        if not all(isinstance(w, dict) and "fold" not in w for w in folds):
            return data
        return {**data, "folds": [{**w, "repeat": j % repeats, "fold": j // repeats} for j, w in enumerate(folds)]}

    def operating(self, members: int) -> Operating:
        """Threshold and temperature for serving `members` networks: the ensemble's where CV measured exactly
        that ensemble, else one network's (a mean of other sizes was never calibrated on its own)."""
        if self.ensemble is not None and members == self.repeats:
            return self.ensemble
        if not self.folds:
            raise RecordError(f"{self.name}: a classical baseline has no operating point to serve")
        return Operating(threshold=self.threshold, temperature=self.temperature)

    def verify(self, folder: Path, members: int | None = None) -> None:
        """The weights on disk are the ones this card's scores were measured with (no half-written folder)."""
        for weights in self.folds[:members]:
            path = folder / weights.file
            if not path.is_file():
                raise RecordError(f"{path}: listed in {folder / self.FILE} but missing; retrain {self.name}")
            if sha256(path) != weights.sha256:
                raise RecordError(
                    f"{path}: differs from the weights {folder / self.FILE} was scored with; retrain {self.name}"
                )


class CVSummary(Record):
    """One model's cross-validation: per-fold means over test images, then mean and std over folds."""

    model: str
    kind: Literal["unet4", "smp", "classical"]
    n_folds: int
    n_images: int
    threshold: float | None
    study_threshold: float | None
    fold_thresholds: tuple[float, ...] | None
    jaccard_mean: float
    jaccard_std: float
    dice_mean: float
    dice_std: float
    precision_mean: float
    precision_std: float
    recall_mean: float
    recall_std: float
    object_precision_mean: float
    object_precision_std: float
    object_recall_mean: float
    object_recall_std: float
    object_f1_mean: float
    object_f1_std: float
    jaccard_per_fold: tuple[float, ...]  # repeats x n_folds, repeat-major: paired comparisons on the same folds
    jaccard_at_study_threshold_mean: float | None = None
    jaccard_at_study_threshold_std: float | None = None
    intensity_window: tuple[float, float] | None
    repeats: int = Field(default=1, ge=1)
    jaccard_repeat_means: tuple[float, ...] = ()  # the CV mean of each repeat
    jaccard_between_repeat_std: float | None = None  # run-to-run noise of the CV mean (repeats > 1)
    ensemble_jaccard_mean: float | None = None  # the R-network mean probability on repeat 0's folds
    ensemble_jaccard_std: float | None = None
    ensemble_jaccard_per_fold: tuple[float, ...] | None = None
    temperature: float | None = None  # fitted on all out-of-fold predictions (1: calibration off)
    ece_raw_mean: float | None = None  # expected calibration error per test fold before calibration, mean
    ece_calibrated_mean: float | None = None  # ... after, with a temperature fitted on the other folds
    # The bias of the mean particle diameter, particles pooled per fold (signed, relative to the reference's);
    # a K-class study has it per particle class under `classes` (written before it was scored: absent)
    diameter_error_mean: float | None = Field(default=None, exclude_if=lambda v: v is None)
    diameter_error_std: float | None = Field(default=None, exclude_if=lambda v: v is None)
    # The groups the folds kept apart: the data's, joined where near-duplicate images link them (ncseg.data.leaks)
    leak_threshold: float | None = None  # the similarity that joins; None: not joined (or written before joining)
    groups: int | None = Field(default=None, ge=1)  # how many groups the folds split, after joining
    joined_groups: tuple[tuple[str, ...], ...] = ()  # each set of the data's groups joined into one
    # A study of more than two classes (ncseg.labels): how a class was picked, and each foreground class's scores
    # (`jaccard_mean`, ..., object scores for particle classes) by name; absent from a binary study's file
    decision: Literal["argmax"] | None = Field(default=None, exclude_if=lambda v: v is None)
    classes: dict[str, dict[str, float]] | None = Field(default=None, exclude_if=lambda v: v is None)
    # each foreground class's Jaccard per fold, in jaccard_per_fold's order: what a class score is paired on
    class_jaccard_per_fold: dict[str, tuple[float, ...]] | None = Field(default=None, exclude_if=lambda v: v is None)
    # every foreground class as one mask against the reference's: what a binary study of the same images scores
    material_jaccard_mean: float | None = Field(default=None, exclude_if=lambda v: v is None)
    material_jaccard_std: float | None = Field(default=None, exclude_if=lambda v: v is None)

    @property
    def noise(self) -> float:
        """How much the CV mean moves between runs of this very configuration: the between-repeat std where
        repeats measured it, else the standard error of the mean over folds (a lower bound: it leaves out
        the initialisation and split noise that only repeats see)."""
        if self.jaccard_between_repeat_std is not None:
            return self.jaccard_between_repeat_std
        return self.jaccard_std / len(self.jaccard_per_fold) ** 0.5

    @property
    def trainable(self) -> bool:
        return self.kind != "classical"

    def score_per_fold(self, score: str | None) -> tuple[float, ...]:
        """The folds' values of `score` (register.score): None, the headline Jaccard; a class name, its Jaccard."""
        if score is None:
            return self.jaccard_per_fold
        if not self.class_jaccard_per_fold or score not in self.class_jaccard_per_fold:
            raise RecordError(
                f"{self.model}: no per-fold {score} Jaccard in its CV summary (scored before classes were recorded "
                "per fold, or not a class of it): retrain it (`dvc repro`)"
            )
        return self.class_jaccard_per_fold[score]

    def score_mean(self, score: str | None) -> float:
        return self.jaccard_mean if score is None else statistics.fmean(self.score_per_fold(score))

    def score_noise(self, score: str | None) -> float:
        """`noise` of `score`: the spread of its repeat means, or the standard error over folds."""
        if score is None:
            return self.noise
        folds, n = self.score_per_fold(score), self.n_folds
        if self.repeats > 1:
            return statistics.stdev(statistics.fmean(folds[i : i + n]) for i in range(0, len(folds), n))
        return statistics.stdev(folds) / len(folds) ** 0.5

    def mean(self, key: str) -> float:
        return float(getattr(self, f"{key}_mean"))

    def std(self, key: str) -> float:
        return float(getattr(self, f"{key}_std"))


class PairedGain(Record):
    """`model` minus `baseline`, fold by fold on the same test images."""

    model: str
    baseline: str
    gain_mean: float
    gain_std: float
    ci_low: float  # 95 % corrected resampled t-interval of the mean gain over the R x K folds
    ci_high: float
    folds_better: int
    folds: int

    @property
    def beyond_noise(self) -> bool:
        """The interval excludes 0: the difference is larger than what the folds' spread explains."""
        return self.ci_low > 0 or self.ci_high < 0


def score_label(score: str | None) -> str:
    """How a score is named in tables and the registry's reasons."""
    return "Jaccard" if score is None else f"{score} Jaccard"


class Summary(Record):
    FILE: ClassVar[str] = "summary.json"
    best: str
    models: dict[str, CVSummary]
    paired_gains: tuple[PairedGain, ...]  # on `score`
    score: str | None = None  # register.score: what ranked the models and what the gains are of (None: Jaccard)

    def gains_of(self, model: str) -> list[PairedGain]:
        return [g for g in self.paired_gains if g.model == model]

    def baseline_gains(self, model: str) -> list[PairedGain]:
        """`model`'s gains over the classical baselines: the bar every network must clear."""
        return [g for g in self.gains_of(model) if not self.models[g.baseline].trainable]


class Tiling(Record):
    tile: int
    context: int
    batch_tiles: int
    precision: Precision  # `auto` is resolved where the model runs (ncseg.inference.runtime)
    backend: Backend = "torch"  # torch or ONNX Runtime (auto: resolved where it runs); older models: torch

    def tiling(self) -> dict[str, int | str]:
        """The settings tiled inference takes (ncseg.inference.tiling); the backend chose what it runs."""
        return self.model_dump(exclude={"backend"})


class ServingConfig(Record):
    """Everything the served model needs beside its weights; travels inside the logged MLflow model."""

    FILE: ClassVar[str] = "serving.json"
    architecture: str
    threshold: float | None  # on the calibrated probability; None: a K-class model, whose decision is the argmax
    inference: Tiling
    normalization: tuple[View, ...]
    intensity_window: tuple[float, float] | None
    tta: TTA  # the default; a request may ask for another
    temperature: float = Field(default=1.0, gt=0)  # calibration of the members' mean probability
    members: int = Field(ge=1)
    max_pixels: int = Field(ge=1)  # per image
    max_rows: int = Field(ge=1)  # images per request
    max_request_pixels: int = Field(ge=1)  # all images of a request together
    domain: Domain | None = None  # from the model card: what the served model flags as out of distribution
    # How `ncseg predict` cuts and measures particles, from the study that registered it: a model folder works outside
    # any project. None: registered before they travelled with the model (predict then reads params.yaml).
    particles: ParticleParams | None = None
    labels: LabelSet = Field(default_factory=LabelSet.binary)  # what its outputs mean (older models: binary NCs)


class RegistryDecision(Record):
    FILE: ClassVar[str] = "registry.json"
    model_name: str
    version: str
    alias: str | None  # champion, challenger, or None (registered for inspection, not promoted)
    created: bool
    architecture: str
    cv_jaccard: float  # the version's CV score (`score`), as is the champion's
    champion_cv_jaccard: float | None
    reason: str
    score: str | None = None  # register.score: None, the Jaccard; a class name, that class's Jaccard


def dump_json(record: Record) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=2)
