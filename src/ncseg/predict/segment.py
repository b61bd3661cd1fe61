"""One micrograph through the registered model, once: the `Segmentation` every output of `ncseg predict` is made of.

The model runs in this process on the code the server runs (ncseg.serving.model), without the server's request
limits (they bound what one request may cost a shared server, and its file round trip would copy the image): a
detector frame or montage of 8k-16k px is tiled like any image. One call into that code gives the probability, the
uncertainty and the out-of-domain reason from one set of network passes (each view of the test-time augmentation
through each member, once), so what is written, reviewed or shown never runs a network again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ncseg.config import ParticleParams
from ncseg.io.images import Micrograph
from ncseg.labels import LabelSet

if TYPE_CHECKING:
    from ncseg.serving.model import NcSegmenter


@dataclass(frozen=True)
class Segmentation:
    """Everything known about one image after its passes through the model: what the outputs are made from."""

    image: Micrograph  # its own pixels (particle intensities are measured on them), pixel size and file
    probability: np.ndarray  # calibrated NC probability, float32, the image's shape; (K, H, W) for K classes
    classes: np.ndarray  # uint8 class id per pixel (ncseg.labels): probability > threshold, or the argmax
    uncertainty: np.ndarray  # per pixel, float32 in [0, 1] (ncseg.uncertainty)
    ood: str  # why the image is unlike the model's training data; '' if it is not (or the model cannot tell)
    threshold: float | None  # None: a K-class model, which decides by the argmax
    labels: LabelSet  # what the class ids mean

    @property
    def pixel_size_nm(self) -> float | None:
        return self.image.pixel_size_nm

    @property
    def mask(self) -> np.ndarray:
        """The foreground: every class but the background (a binary model's NCs)."""
        return self.classes > 0

    def class_probability(self, k: int) -> np.ndarray:
        """Class `k`'s probability map; a binary model's one map is its particle class's."""
        return self.probability if self.labels.is_binary else self.probability[k]


class Segmenter:
    """A registered model, loaded once, that segments micrographs one at a time."""

    def __init__(self, served: NcSegmenter, description: str) -> None:
        self.served = served
        self.description = description  # what made the results, on every summary row and figure
        self.threshold = served.config.threshold  # the served default (the signature's); None: argmax
        self.particles = served.config.particles  # None: registered before the settings travelled with it
        self.labels = served.config.labels

    def refusals(self, threshold: float | None, particles: ParticleParams) -> list[str]:
        """What this model cannot do of what was asked, before any image is read."""
        problems, classes = [], ", ".join(self.labels.names)
        if threshold is not None and self.threshold is None:
            problems.append(
                f"--threshold {threshold}: {self.description} picks each pixel's class ({classes}) by the argmax"
            )
        measured = {self.labels.names[k] for k in self.labels.particle_ids}
        if unknown := sorted(set(particles.classes) - measured):
            problems.append(
                f"particles.classes: {', '.join(unknown)} is not a particle class of {self.description} ({classes})"
            )
        return problems

    def segment(self, image: Micrograph, threshold: float | None = None, tta: str | None = None) -> Segmentation:
        """`image` through the served model's one set of passes; `tta` overrides the model's test-time augmentation
        and `threshold` its cut. The out-of-domain check sees the image's pixel size."""
        maps = self.served.segment(image.data, tta or self.served.config.tta, image.pixel_size_nm)
        cut = self.threshold if threshold is None else threshold
        return Segmentation(image, maps.probability, maps.classes(cut), maps.uncertainty, maps.ood, cut, self.labels)


def load_segmenter(model_uri: str, tracking_uri: str) -> Segmenter:
    """The model, or a ModelLookupError in one line: no store here, no such model or alias, an unreadable folder,
    weights changed after registration. Nothing is created on the way (no store, no experiment)."""
    from ncseg.registry.lookup import describe_model, load_served

    return Segmenter(load_served(model_uri, tracking_uri), describe_model(model_uri, tracking_uri))
