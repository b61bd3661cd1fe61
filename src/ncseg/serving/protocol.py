"""What travels between a client and the served model: image files in, image files out, checked on the way in.

Each request row's `image` column holds a base64-encoded TIFF or PNG (the microscope's own 8/16/32-bit greyscale
file, any height and width), and each answer's `tiff` column a base64-encoded, zlib-compressed TIFF — the 0/255
foreground mask, with `output=classes` the uint8 class-id map (ncseg.labels: 0 background; a binary model's 0/1),
with `output=probability` the float32 probability map ((K, H, W), one plane per class, for a K-class model), with
`output=uncertainty` the float32 per-pixel uncertainty (ncseg.uncertainty) — and its `ood` column why the image
lies outside the training data (ncseg.ood; empty when it does not, or where the model has no record of that data;
the request's `pixel_size_nm` lets it check the scale too). Files rather than JSON arrays of pixel values keep a
2048 x 2048 request at a few MB and its decoding in milliseconds, where JSON numbers cost seconds
(benchmarks/results.md).

A request is refused with a short message (HTTP 400 from the server) before any image is decoded when its headers
declare more than the served model's limits, in pixels or in tiles of network input. The served model
(ncseg.serving.model), a Python client and `ncseg predict`'s tests share this codec.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import tifffile
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from ncseg.inference.tiling import tiled_pixels
from ncseg.inference.tta import TRANSFORMS
from ncseg.io.images import ImageError, decode_image, encode_tiff, read_header
from ncseg.models.geometry import Geometry

OUTPUTS = ("mask", "classes", "probability", "uncertainty")
INPUT_COLUMN, OUTPUT_COLUMN, OOD_COLUMN = "image", "tiff", "ood"


def signature(threshold: float | None, tta: str) -> ModelSignature:
    """What a client may send and gets back. A K-class model (`threshold` None: it decides by the argmax) declares
    the param without a default, so that one sent reaches the model and is refused (MLflow drops undeclared ones)."""
    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec("string", OUTPUT_COLUMN), ColSpec("string", OOD_COLUMN)]),
        params=ParamSchema(
            [
                ParamSpec("threshold", "double", threshold),
                ParamSpec("output", "string", "mask"),
                ParamSpec("tta", "string", tta),
                ParamSpec("pixel_size_nm", "double", None),  # for the out-of-distribution check; unknown by default
            ]
        ),
    )


def encode_file(image: np.ndarray) -> str:
    """One array as a request row or an answer row carries it: a base64-encoded, zlib-compressed TIFF."""
    return base64.b64encode(encode_tiff(image)).decode()


def encode_request(images: list[np.ndarray]) -> pd.DataFrame:
    """What a Python client sends: one base64 TIFF per image (any dtype the TIFF holds)."""
    return pd.DataFrame({INPUT_COLUMN: [encode_file(image) for image in images]})


def decode_answer(answer: pd.DataFrame | list[dict]) -> list[np.ndarray]:
    """The arrays in the model's answer: a DataFrame in process, `predictions` (a list of rows) from the server. Each
    is a TIFF the model wrote (encode_file): a plane, or a K-class model's (K, H, W) probabilities."""
    rows = answer[OUTPUT_COLUMN] if isinstance(answer, pd.DataFrame) else [row[OUTPUT_COLUMN] for row in answer]
    return [tifffile.imread(io.BytesIO(base64.b64decode(text))) for text in rows]


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # served as HTTP 400


@dataclass(frozen=True)
class TileCost:
    """What an image costs the networks: the input pixels of its tiles (ncseg.inference.tiling.tiled_pixels).

    A strip one pixel high is padded to whole tiles along all its length, 40-100x the work of a square of as many
    pixels: a pixel limit alone lets a 25 kB request keep a worker busy for minutes. An image, and a request, may
    cost what a square of its pixel limit grown by one tile each way costs: room for any image within the limit
    that is not far longer than wide, however its sides fall on tile boundaries, and none for such strips.
    """

    geometry: Geometry
    tile: int
    context: int

    def __call__(self, height: int, width: int) -> int:
        return tiled_pixels(height, width, self.geometry, tile=self.tile, context=self.context)

    def limit(self, pixels: int) -> int:
        side = math.isqrt(pixels) + self.tile
        return self(side, side)


def _checked_files(
    model_input: Any, *, max_pixels: int, max_rows: int, max_request_pixels: int, cost: TileCost
) -> list[tuple[str, bytes]]:
    """Each row's file with its name for errors, once every row's header is within the limits.

    The limits are checked on what the headers declare, for all rows before any is decoded: a few kB of zlib TIFF
    can declare a 40000 x 40000 image whose decoding alone takes gigabytes, or a strip whose tiles take minutes.
    """
    if not isinstance(model_input, pd.DataFrame) or INPUT_COLUMN not in model_input:
        raise _refuse(f"expected a table with a column {INPUT_COLUMN!r} of base64-encoded TIFF or PNG files")
    if model_input.empty:
        raise _refuse("empty request: no images")
    if len(model_input) > max_rows:
        raise _refuse(f"{len(model_input)} images in one request, over the limit of {max_rows}; send fewer per request")
    files, total, work = [], 0, 0
    image_budget, request_budget = cost.limit(max_pixels), cost.limit(max_request_pixels)
    for row, text in enumerate(model_input[INPUT_COLUMN]):
        name = f"request image {row}"
        try:
            data = base64.b64decode(str(text), validate=True)
        except binascii.Error as err:
            raise _refuse(f"{name}: not valid base64 ({err})") from err
        try:
            header = read_header(data, name)
        except ImageError as err:
            raise _refuse(str(err)) from err
        if header.pixels > max_pixels:
            raise _refuse(f"{name}: {header.height}x{header.width} px exceeds the limit of {max_pixels} px")
        tiles = cost(header.height, header.width)
        if tiles > image_budget:
            raise _refuse(
                f"{name}: {header.height}x{header.width} px is tiled into {tiles} px of network input (a thin image "
                f"is padded to whole tiles), over the limit of {image_budget} px; send it as squarer pieces"
            )
        total, work = total + header.pixels, work + tiles
        if total > max_request_pixels:
            raise _refuse(
                f"{name}: brings the request to {total} px, over the limit of {max_request_pixels} px per request; "
                "send fewer images per request"
            )
        if work > request_budget:
            raise _refuse(
                f"{name}: brings the request to {work} px of network input in tiles, over the limit of "
                f"{request_budget} px per request; send fewer images per request"
            )
        files.append((name, data))
    return files


def decode_images(
    model_input: Any, *, max_pixels: int, max_rows: int, max_request_pixels: int, cost: TileCost
) -> Iterator[np.ndarray]:
    """Each row's image as a 2-D float32 array, or a clear error naming the row and what is wrong with it.

    The limits are checked for every row first; the images are then decoded one at a time, as they are used, so a
    request holds one decoded image, not all of them.
    """
    files = _checked_files(
        model_input, max_pixels=max_pixels, max_rows=max_rows, max_request_pixels=max_request_pixels, cost=cost
    )
    return (_decode(data, name) for name, data in files)


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        return decode_image(data, name).astype(np.float32)
    except ImageError as err:
        raise _refuse(str(err)) from err


def request_params(
    params: dict[str, Any] | None, default_threshold: float | None, default_tta: str
) -> tuple[float | None, str, str]:
    """The request's threshold, output and test-time augmentation, or a short client error.

    MLflow fills in the defaults and refuses a value of the wrong type, but passes null and NaN through: without
    this check `"threshold": null` ended in a TypeError, which the server answers with its stack trace. A K-class
    model (`default_threshold` None) decides by the argmax: a threshold sent to it is refused, not ignored.
    """
    params = params or {}
    threshold, output = params.get("threshold", default_threshold), params.get("output", "mask")
    if default_threshold is None and params.get("threshold") is not None:
        raise _refuse("this model decides each pixel's class by the argmax of its class probabilities: no threshold")
    cut_ok = isinstance(threshold, Real) and not isinstance(threshold, bool) and 0.0 < threshold < 1.0  # NaN: no
    if default_threshold is not None and not cut_ok:
        raise _refuse(f"threshold must be a number strictly between 0 and 1, got {threshold!r}")
    if not isinstance(output, str) or output not in OUTPUTS:
        raise _refuse(f"output must be one of {OUTPUTS}, got {output!r}")
    tta = params.get("tta", default_tta)
    if not isinstance(tta, str) or tta not in TRANSFORMS:
        raise _refuse(f"tta must be one of {tuple(TRANSFORMS)}, got {tta!r}")
    return None if threshold is None else float(threshold), output, tta


def request_deadline() -> float | None:
    """When the scoring server stops waiting for the request in hand (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT, counted
    from here, just after the request arrived): it then answers the client 504 while the worker thread computes on,
    for nobody. None outside a server (a Python caller, `ncseg predict`), where nothing times out; `mlflow models
    predict` simulates a server and gets one too."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    if not _MLFLOW_IS_IN_SERVING_ENVIRONMENT.get():
        return None
    return time.monotonic() + MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()


def request_pixel_size(params: dict[str, Any] | None) -> float | None:
    """The request's `pixel_size_nm` (nm per pixel, for the out-of-distribution check), None when not given."""
    size = (params or {}).get("pixel_size_nm")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, Real) or not 0.0 < size < float("inf"):  # NaN too
        raise _refuse(f"pixel_size_nm must be a positive number of nm per pixel, got {size!r}")
    return float(size)
