"""The deployable model: an MLflow pyfunc wrapping the served fold networks with their normalisation, tiling and
threshold.

Image files go in and come out (ncseg.serving.protocol: the columns, the params, the limits checked on each file's
header). Nothing about the networks leaks to the caller. Weights are plain state dicts, loaded with
`weights_only=True`, never pickled modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED

from ncseg.calibration import apply, apply_classes
from ncseg.inference.onnx import runners
from ncseg.inference.tiling import DeadlineError, RawViews
from ncseg.inference.tta import TRANSFORMS, predict_tta, predict_views, spread_transforms
from ncseg.models.zoo import load_ensemble
from ncseg.ood import check
from ncseg.records import ModelCard, ServingConfig
from ncseg.serving.protocol import (
    OOD_COLUMN,
    OUTPUT_COLUMN,
    TileCost,
    decode_images,
    encode_file,
    request_deadline,
    request_params,
    request_pixel_size,
)
from ncseg.uncertainty import class_uncertainty, one_view_uncertainty, pixel_uncertainty

MODEL_CODE = Path(__file__).with_name("model_code.py")  # what MLflow logs as the model: it builds an NcSegmenter
CALIBRATION_PIXELS = 1 << 16  # calibrated at once: its float64 logit takes 8 bytes a pixel, a few times over


def _calibrated(prob: np.ndarray, temperature: float) -> np.ndarray:
    """`calibration.apply` in place, a band of rows at a time: its float64 logit of a whole 16k² map is gigabytes.
    A K-class model's (K, H, W) probabilities by `calibration.apply_classes`, the same way."""
    classes = prob.ndim == 3
    rows = max(1, CALIBRATION_PIXELS // (prob.shape[-1] * (prob.shape[0] if classes else 1)))
    for start in range(0, prob.shape[-2], rows):
        band = prob[..., start : start + rows, :]
        band[...] = apply_classes(band, temperature) if classes else apply(band, temperature)
    return prob


@dataclass(frozen=True)
class Maps:
    """One image as the served model sees it: the calibrated NC probability ((K, H, W) class probabilities for a
    K-class model), the per-pixel uncertainty (float32, the image's shape) and why it is unlike the training images
    ('' if it is not, or unknown)."""

    probability: np.ndarray
    uncertainty: np.ndarray
    ood: str

    def classes(self, threshold: float | None) -> np.ndarray:
        """The uint8 class-id map: the argmax of a K-class model's probabilities (`threshold` None), else 1 where
        the NC probability is above `threshold`."""
        if threshold is None:
            return argmax_classes(self.probability)
        return (self.probability > threshold).astype(np.uint8)

    def answer(self, output: str, threshold: float | None) -> np.ndarray:
        """The map a request's `output` asks for: the 0/255 foreground mask, the class map, the probability or the
        uncertainty."""
        if output == "mask":
            return np.where(self.classes(threshold) > 0, 255, 0).astype(np.uint8)
        if output == "classes":
            return self.classes(threshold)
        return self.probability if output == "probability" else self.uncertainty


def argmax_classes(prob: np.ndarray) -> np.ndarray:
    """The uint8 id of the most probable class of a (K, H, W) stack, plane by plane (the first on a tie, as
    np.argmax): np.argmax along the class axis walks it strided and costs several times more."""
    best, top = np.zeros(prob.shape[1:], np.uint8), prob[0].copy()
    for k, plane in enumerate(prob[1:], 1):
        better = plane > top
        best[better] = k
        np.maximum(top, plane, out=top)
    return best


def _summed_then_calibrated(views: Iterable[np.ndarray], total: np.ndarray, temperature: float) -> Iterator[np.ndarray]:
    """Each raw view added into `total` (the probability is calibrated from their mean), then calibrated in place
    for the spread: one map at a time, never all of them."""
    for view in views:
        total += view
        yield _calibrated(view, temperature)


class NcSegmenter(mlflow.pyfunc.PythonModel):
    """The served CV fold networks (mean probability), thresholded at the CV-chosen threshold by default (a K-class
    model: each pixel the class of highest mean probability).

    Logged as models-from-code (MODEL_CODE builds it), so a model folder holds no pickle.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.config = ServingConfig.load(Path(context.artifacts["serving"]))
        self.card = ModelCard.load(Path(context.artifacts["weights"]) / ModelCard.FILE)  # its CV run and scores
        nets, self.geometry = load_ensemble(Path(context.artifacts["weights"]))
        self.nets = [net.to(memory_format=torch.channels_last) for net in nets]  # oneDNN's fast convolutions
        inference = self.config.inference
        self.runners = runners(self.nets, inference.backend, inference.precision)  # what answers: torch or ORT
        self.cost = TileCost(self.geometry, self.config.inference.tile, self.config.inference.context)

    # pd.DataFrame: a type hint MLflow accepts without inferring a signature from it (the explicit one, with the
    # params, stays) and without warning; it is what MLflow passes after enforcing that signature.
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        threshold, output, tta = request_params(params, self.config.threshold, self.config.tta)
        pixel_size_nm = request_pixel_size(params)
        config = self.config
        images = decode_images(
            model_input,
            max_pixels=config.max_pixels,
            max_rows=config.max_rows,
            max_request_pixels=config.max_request_pixels,
            cost=self.cost,
        )
        deadline = request_deadline()
        answers, ood = [], []
        for row, image in enumerate(images):
            try:
                maps = self.segment(image, tta, pixel_size_nm, deadline)
            except DeadlineError as err:
                raise MlflowException(
                    f"request image {row}: {err}: the server's request timeout "
                    "(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) has passed; send smaller or fewer images per request",
                    error_code=DEADLINE_EXCEEDED,
                ) from err
            answers.append(encode_file(maps.answer(output, threshold)))
            ood.append(maps.ood)
        return pd.DataFrame({OUTPUT_COLUMN: answers, OOD_COLUMN: ood})

    def segment(
        self, image: np.ndarray, tta: str, pixel_size_nm: float | None = None, deadline: float | None = None
    ) -> Maps:
        """Everything the model says about a raw image of any size, from one set of passes: each network over each
        view of `tta` once (its tiles normalised as they are cut, so memory is the image, these answers, a few
        running sums and a batch of tiles). The mean of the views is the calibrated probability (the threshold was
        chosen on that scale); the uncertainty is their spread, or with one view 4p(1-p) of it (ncseg.uncertainty).
        What the server answers and what `ncseg predict` writes both come from here. A K-class model's probability
        is the mean of its softmax over the views of `tta`, calibrated by its temperature; its uncertainty the
        margin of the two likeliest classes (ncseg.uncertainty.class_uncertainty)."""
        stacked = RawViews.of(image, self.config.normalization, self.config.intensity_window)
        tiling = self.config.inference.tiling() | {"deadline": deadline}
        ood = "; ".join(self.out_of_domain(image, pixel_size_nm))
        if not self.config.labels.is_binary:
            prob = predict_tta(self.runners, self.geometry, stacked, tta, **tiling)
            prob = _calibrated(prob, self.config.temperature)  # the argmax stays where it is
            return Maps(prob, class_uncertainty(prob), ood)
        if len(TRANSFORMS[tta]) == 1:
            prob = _calibrated(
                predict_tta(self.runners, self.geometry, stacked, tta, **tiling), self.config.temperature
            )
            return Maps(prob, one_view_uncertainty(prob), ood)
        total = np.zeros(image.shape, np.float32)
        views = predict_views(self.runners, self.geometry, stacked, tta, **tiling)
        uncertainty = pixel_uncertainty(_summed_then_calibrated(views, total, self.config.temperature))
        total /= len(spread_transforms(tta)) * len(self.runners)  # the mean of the views predict_views ran
        return Maps(_calibrated(total, self.config.temperature), uncertainty, ood)

    def out_of_domain(self, image: np.ndarray, pixel_size_nm: float | None) -> list[str]:
        """Why `image` is unlike the training images; nothing for a model registered before cards recorded them."""
        return [] if self.config.domain is None else check(image, pixel_size_nm, self.config.domain)
