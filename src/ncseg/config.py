"""params.yaml -> one frozen, validated settings object.

This module is the only place the shape of the configuration is defined: the CLI, the DVC stages and the
tests all load `params.yaml` through `load_params`, so a default can never differ between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ncseg.labels import LabelSet


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Paths(_Frozen):
    raw: Path
    augmented: Path
    models: Path
    metrics: Path
    plots: Path
    # finished folds kept so a stopped CV resumes (ncseg.training.resume); None: every run trains every fold
    fold_cache: Path | None = None


class SynthParams(_Frozen):
    n_images: int = Field(ge=1)
    size_px: int = Field(ge=64)
    pixel_size_nm: float = Field(gt=0)
    edge_nm: float = Field(gt=0)
    edge_rel_std: float = Field(ge=0, lt=0.5)
    coverage: float = Field(gt=0, lt=0.6)
    patch_fraction: float = Field(ge=0, le=1)
    gap_nm: tuple[float, float]
    overlap_fraction: float = Field(ge=0, le=0.5)
    carbon_thickness_nm: float = Field(gt=0)
    carbon_variation: float = Field(ge=0, lt=1)
    probe_fwhm_nm: float = Field(ge=0)
    dose_e_per_nm2: float = Field(gt=0)
    line_jitter_px: float = Field(ge=0)
    line_gain_std: float = Field(ge=0, lt=0.5)


class DataParams(_Frozen):
    synth: SynthParams


class AugmentParams(_Frozen):
    n_rotated: int = Field(ge=0)
    angles: tuple[Literal[90, 180, 270], ...] = Field(min_length=1)


# Near-duplicate images at least this similar (ncseg.data.leaks: r between 64 px signatures, best of 8 turns and
# shifts up to 10 %) are kept on one side of every split. Measured: neighbouring slices 0.95-1.00, nothing between
# 0.88 and 0.95 on the real data, 2 000 distinct images of one specimen kind at most 0.53 (benchmarks/leaks.md).
LEAK_THRESHOLD = 0.9


class CVParams(_Frozen):
    n_folds: int = Field(ge=2)
    repeats: int = Field(ge=1)  # independent grouped K-fold runs, each with its own split, init and sampling
    inner_val_fraction: float = Field(gt=0, lt=1)
    # Groups that a near-duplicate pair of images links are joined before splitting; None: the data's groups as
    # they are (a study written before this setting gets the default)
    leak_threshold: float | None = Field(default=LEAK_THRESHOLD, gt=0, le=1)

    def seed(self, base: int, repeat: int) -> int:
        """Repeat r's seed; repeat 0 runs on the study seed itself, so one repeat is exactly the plain CV."""
        return base + 1000 * repeat


# Dice/Lovász keep the small NC class from being ignored; `focal` alone is the published Pt/alumina U-Net's loss
Loss = Literal["bce_dice", "focal_dice", "bce_lovasz", "focal"]
Schedule = Literal["constant", "cosine", "onecycle"]
Norm = Literal["none", "batch", "instance", "group"]


# auto: bf16 where the hardware computes it (a CUDA GPU from Ampere on; a CPU with AVX-512 BF16 or AMX), fp32
# elsewhere, where bf16 is emulated (on an AVX2-only AMD EPYC by reference convolutions ~10x slower than fp32:
# benchmarks/precision.md). bf16 and fp32 are taken as written.
Precision = Literal["auto", "fp32", "bf16"]
# auto: ONNX Runtime where the served networks would run fp32 on a CPU (1.5x torch there, the same masks), torch
# where the CPU or GPU computes bf16 (ncseg.inference.runtime.effective_backend)
Backend = Literal["auto", "torch", "onnxruntime"]


class TrainParams(_Frozen):
    epochs: int = Field(ge=1)
    steps_per_epoch: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    crop_px: int = Field(ge=32)
    lr: float = Field(gt=0)
    patience: int = Field(ge=1)
    intensity_jitter: float = Field(ge=0, lt=0.4)
    noise: bool  # Gaussian/shot-noise augmentation; off where the masks follow the image's own noise
    precision: Precision  # bf16: autocast + channels-last steps, ~2.5x faster on AMX/AVX-512 CPUs
    device: Literal["auto", "cpu", "cuda"]
    workers: int = Field(ge=0)  # DataLoader processes preparing batches (0: the training process); never the numbers
    loss: Loss
    focal_gamma: float = Field(ge=0)  # the focal losses' focusing exponent (0: cross-entropy)
    class_weights: tuple[float, ...] | None = None  # a K-class loss's weights by class id; None: the label set's
    schedule: Schedule  # learning rate over the planned epochs x steps (early stopping may end it sooner)
    # share of crops cut around a particle pixel (nnU-Net's foreground oversampling; data.dataset.Focus); 0: every
    # crop anywhere, as a study written before this setting trains
    oversample: float = Field(default=0.0, ge=0, le=1)

    def for_model(self, overrides: dict[str, Any]) -> TrainParams:
        """These settings with a model's own `train:` keys (a published recipe's loss and schedule beside the
        study's models, on the same folds)."""
        return TrainParams.model_validate(self.model_dump() | overrides)


TTA = Literal["none", "flip", "d4"]  # test-time augmentation: none, the 4 mirror images, the 8 dihedral transforms
View = Literal["image", "dataset"]  # one normalised input channel: the image's own percentiles, or the dataset's


class InferenceParams(_Frozen):
    """How whole images go through a network: the same in validation, CV, the served model and `predict`."""

    normalization: tuple[View, ...] = Field(min_length=1)  # one input channel each
    # the `dataset` view's window: the percentiles of all training pixels that become 0 and 1 (fitted once, kept
    # in the model card); a study written before this setting gets the study's (0.5, 99.5)
    dataset_window: tuple[float, float] = (0.5, 99.5)
    tile: int = Field(ge=64)
    context: int = Field(ge=0)
    batch_tiles: int = Field(ge=1)
    precision: Precision  # validation, CV predictions, the served model and predict alike
    tta: TTA  # CV test predictions, the served model's default, `ncseg predict`; not validation during training
    backend: Backend  # what runs the served model and `ncseg predict` (training, validation and CV: torch)

    @model_validator(mode="after")
    def _distinct_views(self) -> InferenceParams:
        if len(set(self.normalization)) != len(self.normalization):
            raise ValueError("inference.normalization lists a view twice")
        lo, hi = self.dataset_window
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"inference.dataset_window: percentiles 0 <= low < high <= 100, not {lo}, {hi}")
        return self

    def tiling(self) -> dict[str, int | str]:
        return {
            "tile": self.tile,
            "context": self.context,
            "batch_tiles": self.batch_tiles,
            "precision": self.precision,
        }


class UNet4Params(_Frozen):
    """The study's U-Net; `depth` and `pooling` re-create other U-Nets of the family (the published Pt/alumina
    recipe: 5 poolings, 32 -> 1024 channels, average pooling). Defaults are the study's, so older cards load."""

    kind: Literal["unet4"]
    base_channels: int = Field(ge=4)
    depth: int = Field(default=4, ge=1, le=6)  # poolings: 4 is the study's four-block U-Net
    pooling: Literal["max", "avg"] = "max"
    train: dict[str, Any] = Field(default_factory=dict)  # this model's own train: keys (TrainParams.for_model)
    dropout: float = Field(ge=0, lt=1)
    padding: Literal["same", "valid"]
    l2: float = Field(ge=0)
    weight_decay: float = Field(ge=0)
    norm: Norm = "none"  # after each conv; the study has none (cards written before this field stay loadable)
    aux_classes: int = Field(default=0, ge=0, le=254)  # a training-only head on the dataset's classes/ maps; 0: none
    aux_weight: float = Field(default=0.0, ge=0)  # its cross-entropy's weight in the loss

    @model_validator(mode="after")
    def _aux_head(self) -> UNet4Params:
        if self.aux_classes == 1:
            raise ValueError("aux_classes: a class map needs 2 or more classes (0 switches the head off)")
        if (self.aux_weight > 0) != (self.aux_classes > 0):
            raise ValueError(
                "aux_classes (the number of classes in the dataset's classes/ maps) and aux_weight (> 0) go together"
            )
        return self


class SmpParams(_Frozen):
    kind: Literal["smp"]
    arch: str
    encoder: str
    weight_decay: float = Field(ge=0)
    train: dict[str, Any] = Field(default_factory=dict)  # this model's own train: keys (TrainParams.for_model)


class ClassicalParams(_Frozen):
    kind: Literal["classical"]
    sigma_nm: float = Field(ge=0)
    min_area_nm2: float = Field(ge=0)


ModelParams = Annotated[UNet4Params | SmpParams | ClassicalParams, Field(discriminator="kind")]
NeuralParams = UNet4Params | SmpParams


class ThresholdParams(_Frozen):
    sweep: tuple[float, float, float]
    study: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _sweep_inside_unit_interval(self) -> ThresholdParams:
        start, stop, step = self.sweep
        if not (0 < start <= stop < 1 and step > 0):
            raise ValueError("threshold.sweep must be [start, stop, step] with 0 < start <= stop < 1, step > 0")
        return self

    def grid(self) -> list[float]:
        start, stop, step = self.sweep
        n = round((stop - start) / step) + 1
        return [round(start + i * step, 6) for i in range(n)]


class CalibrationParams(_Frozen):
    method: Literal["temperature", "none"]  # temperature scaling fitted on out-of-fold predictions
    bins: int = Field(ge=2)  # equal-width probability bins of the reliability diagram and the ECE
    fit_pixels: int = Field(ge=1000)  # pixels drawn from the out-of-fold predictions to fit the temperature


class RegisterParams(_Frozen):
    model_name: str = Field(min_length=1)
    margin: float = Field(ge=0)
    min_jaccard: float | None = Field(ge=0, le=1)  # a floor for champion beside beating the classical baseline
    # What ranks the models, gates and promotes: None, the headline Jaccard (a K-class study's mean over its
    # foreground classes); a foreground class's name, that class's Jaccard (the Pt a catalysis study is about)
    score: str | None
    members: int = Field(ge=1)  # networks served: 1 = what CV measured, fastest; cv.repeats = the measured ensemble
    max_pixels: int = Field(ge=64 * 64)  # per image
    max_rows: int = Field(ge=1)  # images per request
    max_request_pixels: int = Field(ge=64 * 64)  # all images of a request together: what one request may cost

    @model_validator(mode="after")
    def _largest_image_fits_a_request(self) -> RegisterParams:
        if self.max_request_pixels < self.max_pixels:
            raise ValueError(f"max_request_pixels ({self.max_request_pixels}) is below max_pixels ({self.max_pixels})")
        return self


class ClassParticleParams(_Frozen):
    """A particle class's own limits where its particles are of another size than the study's (Pt of 1-3 nm on a
    support beside NCs of 10 nm); unset keys are the study's."""

    min_area_nm2: float | None = Field(default=None, ge=0)
    min_distance_nm: float | None = Field(default=None, gt=0)


class ParticleParams(_Frozen):
    min_area_nm2: float = Field(ge=0)
    min_distance_nm: float = Field(gt=0)
    classes: dict[str, ClassParticleParams] = Field(default_factory=dict)  # by label name (ncseg.labels)

    def of(self, name: str) -> ParticleParams:
        """The limits particles of class `name` are cut and measured with."""
        own = self.classes.get(name)
        if own is None:
            return self
        return self.model_copy(update={k: v for k, v in own.model_dump().items() if v is not None} | {"classes": {}})


class TrackingParams(_Frozen):
    uri: str
    experiment: str = Field(min_length=1)


class Params(_Frozen):
    seed: int
    # the name of the profile (params.yaml `profiles:`) merged over the file; recorded so a run says which
    profile: str | None = None
    paths: Paths
    # What the classes are (ncseg.labels); a study written before label sets is the binary NC study it was
    labels: LabelSet = Field(default_factory=LabelSet.binary)
    data: DataParams
    augment: AugmentParams
    cv: CVParams
    train: TrainParams
    inference: InferenceParams
    models: dict[str, ModelParams] = Field(min_length=1)
    threshold: ThresholdParams
    calibration: CalibrationParams
    registry: RegisterParams = Field(alias="register")  # `register` would shadow a BaseModel method
    particles: ParticleParams
    tracking: TrackingParams

    @model_validator(mode="after")
    def _one_head_for_classes(self) -> Params:
        if self.labels.is_binary:
            return self
        aux = [name for name, m in self.models.items() if isinstance(m, UNet4Params) and m.aux_classes]
        if aux:
            raise ValueError(
                f"models {', '.join(aux)}: aux_classes is a binary study's auxiliary head; with "
                f"{len(self.labels.classes)} labels the network's own head learns the classes (set aux_classes: 0)"
            )
        return self

    @model_validator(mode="after")
    def _model_training_is_valid(self) -> Params:
        """Each model's own train: keys make valid settings, and K-class weights, one per class."""
        for name, m in self.models.items():
            if isinstance(m, ClassicalParams):
                continue
            try:
                t = self.train.for_model(m.train)
            except ValidationError as err:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
                raise ValueError(f"models.{name}.train: {problems}") from None
            if t.class_weights is not None and len(t.class_weights) != len(self.labels.classes):
                raise ValueError(
                    f"models.{name}.train.class_weights: {len(t.class_weights)} weights for "
                    f"{len(self.labels.classes)} classes ({', '.join(self.labels.names)})"
                )
        return self

    @model_validator(mode="after")
    def _score_is_a_class(self) -> Params:
        score = self.registry.score
        if score is None:
            return self
        if self.labels.is_binary:
            raise ValueError(f"register.score {score!r}: a binary study is scored by its Jaccard (leave it null)")
        foreground = [self.labels.names[k] for k in self.labels.foreground]
        if score not in foreground:
            raise ValueError(f"register.score {score!r}: not a foreground class of labels ({', '.join(foreground)})")
        return self

    @model_validator(mode="after")
    def _particle_classes_exist(self) -> Params:
        named = {self.labels.names[k] for k in self.labels.particle_ids}
        if unknown := sorted(set(self.particles.classes) - named):
            raise ValueError(
                f"particles.classes: {', '.join(unknown)} is not a particle class of labels "
                f"({', '.join(sorted(named)) or 'none'})"
            )
        return self

    @model_validator(mode="after")
    def _members_exist(self) -> Params:
        trained = self.cv.n_folds * self.cv.repeats
        if self.registry.members > trained:
            raise ValueError(
                f"register.members ({self.registry.members}) exceeds the {trained} networks CV trains "
                f"(cv.n_folds x cv.repeats)"
            )
        return self

    def model(self, name: str) -> ModelParams:
        if name not in self.models:
            raise KeyError(f"unknown model {name!r}; params.yaml defines: {', '.join(self.models)}")
        return self.models[name]


class ConfigError(ValueError):
    """params.yaml (or an override) does not describe a valid study."""


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """`train.epochs=2` -> tree['train']['epochs'] = 2, the value parsed as YAML (like `dvc exp run -S`)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} is not of the form section.key=value")
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section of params.yaml")
        node = node[part]
    node[leaf] = yaml.safe_load(raw)


def _apply_profile(tree: dict[str, Any], path: Path) -> None:
    """Merge the profile `tree['profile']` names (from `tree['profiles']`, which is removed) over the tree, in
    place. A study's defaults are what its everyday machine runs (the real-data study: 2 CPU cores); a profile
    names what a larger machine adds (`-S profile=gpu`: the smp baselines, the published schedule), in the same
    file, so the two never drift apart."""
    profiles = tree.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles: expected a mapping of profile names, got {type(profiles).__name__}")
    name = tree.get("profile")
    if name is None:
        return
    if not isinstance(name, str) or name not in profiles:
        raise ConfigError(
            f"{path}: profile {name!r} is not one of the file's profiles ({', '.join(profiles) or 'none'})"
        )
    _merge(tree, profiles[name] or {}, f"{path}: profiles.{name}")


def _merge(tree: dict[str, Any], layer: dict[str, Any], where: str) -> None:
    if not isinstance(layer, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(layer).__name__}")
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value, f"{where}.{key}")
        else:
            tree[key] = value


def load_params(path: Path | str = "params.yaml", overrides: list[str] | None = None) -> Params:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read parameters ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(tree).__name__}")
    # the profile's choice and edits first, then the profile, then every other -S: an explicit setting wins, and
    # may reach a section only the profile adds
    on_profile = [a for a in overrides or [] if a.partition("=")[0].split(".")[0] in ("profile", "profiles")]
    for assignment in on_profile:
        apply_override(tree, assignment)
    _apply_profile(tree, path)
    for assignment in overrides or []:
        if assignment not in on_profile:
            apply_override(tree, assignment)
    try:
        return Params.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(f"{path}: {err}") from err


def flatten(params: Params) -> dict[str, str]:
    """Dotted keys for MLflow's flat param store (`train.epochs` -> '30')."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            out[prefix] = str(node)

    walk("", params.model_dump(mode="json", by_alias=True))
    return out
