"""The deployable model: an MLflow pyfunc wrapping the served fold networks with their normalisation, tiling and
threshold.

Image files go in and come out: each row's `image` column holds a base64-encoded TIFF or PNG (the microscope's
own 8/16/32-bit greyscale file, any height and width), and each answer's `tiff` column a base64-encoded,
zlib-compressed TIFF — the 0/255 mask, or with `output=probability` the float32 probability map. Files rather
than JSON arrays of pixel values keep a 2048 x 2048 request at a few MB and its decoding in milliseconds, where
JSON numbers cost seconds (benchmarks/results.md). Nothing about the networks leaks to the caller. Weights are
plain state dicts, loaded with `weights_only=True`, never pickled modules.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from ncseg.io.images import ImageError, decode_image, encode_tiff

OUTPUTS = ("mask", "probability")
INPUT_COLUMN, OUTPUT_COLUMN = "image", "tiff"


def signature(threshold: float) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec("string", OUTPUT_COLUMN)]),
        params=ParamSchema([ParamSpec("threshold", "double", threshold), ParamSpec("output", "string", "mask")]),
    )


def encode_request(images: list[np.ndarray]) -> pd.DataFrame:
    """What a Python client sends: one base64 TIFF per image (any dtype the TIFF holds)."""
    return pd.DataFrame({INPUT_COLUMN: [base64.b64encode(encode_tiff(image)).decode() for image in images]})


def decode_answer(answer: pd.DataFrame | list[dict]) -> list[np.ndarray]:
    """The arrays in the model's answer: a DataFrame in process, `predictions` (a list of rows) from the server."""
    rows = answer[OUTPUT_COLUMN] if isinstance(answer, pd.DataFrame) else [row[OUTPUT_COLUMN] for row in answer]
    return [decode_image(base64.b64decode(text), "answer") for text in rows]


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # served as HTTP 400


def decode_images(model_input: Any, max_pixels: int) -> list[np.ndarray]:
    """Each row's image as a 2-D float32 array, or a clear error naming the row and what is wrong with it."""
    if not isinstance(model_input, pd.DataFrame) or INPUT_COLUMN not in model_input:
        raise _refuse(f"expected a table with a column {INPUT_COLUMN!r} of base64-encoded TIFF or PNG files")
    if model_input.empty:
        raise _refuse("empty request: no images")
    images = []
    for row, text in enumerate(model_input[INPUT_COLUMN]):
        name = f"request image {row}"
        try:
            image = decode_image(base64.b64decode(str(text), validate=True), name)
        except (binascii.Error, ValueError) as err:  # ImageError is a ValueError
            raise _refuse(str(err) if isinstance(err, ImageError) else f"{name}: not valid base64 ({err})") from err
        if image.size > max_pixels:
            raise _refuse(f"{name}: {image.shape[0]}x{image.shape[1]} px exceeds the limit of {max_pixels} px")
        images.append(image.astype(np.float32))
    return images


class NcSegmenter(mlflow.pyfunc.PythonModel):
    """The served CV fold networks (mean probability), thresholded at the CV-chosen threshold by default."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from ncseg.models.zoo import load_ensemble

        self.config = json.loads(Path(context.artifacts["serving"]).read_text())
        nets, self.geometry = load_ensemble(Path(context.artifacts["weights"]))
        self.nets = [net.to(memory_format=torch.channels_last) for net in nets]  # oneDNN's fast convolutions

    # No type hints on predict's arguments: MLflow 3 reads them as a signature and warns on ones it cannot map.
    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        params = params or {}
        threshold = float(params.get("threshold", self.config["threshold"]))
        output = params.get("output", "mask")
        if not 0.0 < threshold < 1.0:
            raise _refuse(f"threshold must lie strictly between 0 and 1, got {threshold}")
        if output not in OUTPUTS:
            raise _refuse(f"output must be one of {OUTPUTS}, got {output!r}")
        answers = []
        for image in decode_images(model_input, self.config["max_pixels"]):
            prob = self.probability(image)
            result = prob if output == "probability" else np.where(prob > threshold, 255, 0).astype(np.uint8)
            answers.append(base64.b64encode(encode_tiff(result)).decode())
        return pd.DataFrame({OUTPUT_COLUMN: answers})

    def probability(self, image: np.ndarray) -> np.ndarray:
        from ncseg.inference.tiling import predict_proba
        from ncseg.normalization import views

        stacked = views(image, self.config["normalization"], self.config["intensity_window"])
        return predict_proba(self.nets, self.geometry, stacked, **self.config["inference"])
