"""The deployable model: an MLflow pyfunc wrapping a fold ensemble with its normalisation, tiling and threshold.

Raw detector values go in (a float32 batch of greyscale images, any height and width), a full-size mask or
probability map comes out; nothing about the network leaks to the caller. Weights are plain state dicts,
loaded with `weights_only=True`, never pickled modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

OUTPUTS = ("mask", "probability")


def signature(threshold: float) -> ModelSignature:
    batch = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))])  # unnamed: predict() gets a plain array
    return ModelSignature(
        inputs=batch,
        outputs=batch,
        params=ParamSchema([ParamSpec("threshold", "double", threshold), ParamSpec("output", "string", "mask")]),
    )


def precision(kind: str) -> torch.autocast:
    """bf16 autocast on the CPU (oneDNN, AVX-512 BF16/AMX where present), or plain fp32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16")


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # served as HTTP 400


def check_batch(model_input: Any, max_pixels: int) -> np.ndarray:
    """A (batch, height, width) float32 array, or a clear error saying what is wrong with the payload."""
    try:
        batch = np.asarray(model_input, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise _refuse(f"images must be numeric greyscale pixel values ({err})") from err
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        hint = " (colour images: convert to greyscale first)" if batch.ndim == 4 else ""
        raise _refuse(f"expected greyscale images shaped (batch, height, width), got shape {batch.shape}{hint}")
    if 0 in batch.shape:
        raise _refuse(f"empty input: shape {batch.shape}")
    if batch.shape[1] * batch.shape[2] > max_pixels:
        raise _refuse(f"image of {batch.shape[1]}x{batch.shape[2]} px exceeds the limit of {max_pixels} px")
    if not np.isfinite(batch).all():
        raise _refuse("images contain NaN or infinite values")
    return batch


class NcSegmenter(mlflow.pyfunc.PythonModel):
    """Mean-probability ensemble of the CV fold models, thresholded at the CV-chosen threshold by default."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from ncseg.models.zoo import load_ensemble

        self.config = json.loads(Path(context.artifacts["serving"]).read_text())
        self.nets, self.geometry = load_ensemble(Path(context.artifacts["weights"]))

    # No type hints on predict's arguments: MLflow 3 reads them as a signature and warns on ones it cannot map.
    def predict(self, context, model_input, params=None) -> np.ndarray:
        from ncseg.inference import normalize, predict_proba

        params = params or {}
        threshold = float(params.get("threshold", self.config["threshold"]))
        output = params.get("output", "mask")
        if not 0.0 < threshold < 1.0:
            raise _refuse(f"threshold must lie strictly between 0 and 1, got {threshold}")
        if output not in OUTPUTS:
            raise _refuse(f"output must be one of {OUTPUTS}, got {output!r}")
        batch = check_batch(model_input, self.config["max_pixels"])
        with precision(self.config["precision"]):
            out = np.stack(
                [
                    predict_proba(self.nets, self.geometry, normalize(image), **self.config["inference"])
                    for image in batch
                ]
            )
        return out if output == "probability" else (out > threshold).astype(np.float32)
