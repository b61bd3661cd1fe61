"""The real `mlflow models serve` on loopback: a demo image in, its mask out; bad payloads get a 4xx."""

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ncseg.io.images import encode_tiff, read_image, read_mask
from ncseg.metrics import jaccard
from ncseg.serving.protocol import decode_answer
from ncseg.serving.server import local_server

from ..builders import BAD_SERVING_PARAMS
from ..serving.test_model import tiff_declaring
from .conftest import project_env

pytestmark = pytest.mark.slow
STARTUP_S = 180


def _post(url: str, body: bytes, timeout: float = 120) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def server(tiny_project, tmp_path_factory):
    with (
        (tmp_path_factory.mktemp("serve") / "server.log").open("w") as log,
        local_server("models:/ncseg-nc-segmenter@champion", project_env(tiny_project), tiny_project, log) as url,
    ):
        yield url


def _request(path: Path, params: dict | None = None, crop: int | None = None) -> dict:
    """What a client sends: the microscope file itself, base64-encoded, one row per image."""
    data = path.read_bytes() if crop is None else encode_tiff(read_image(path).data[:crop, :crop])
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(data).decode()]]}} | (
        {"params": params} if params else {}
    )


def test_served_model_segments_a_demo_image(server, tiny_project):
    path = tiny_project / "data" / "raw" / "images" / "synth_05.tif"
    truth = read_mask(tiny_project / "data" / "raw" / "masks" / "synth_05.tif")
    status, body = _post(f"{server}/invocations", json.dumps(_request(path)).encode())
    assert status == 200, body
    (mask,) = decode_answer(json.loads(body)["predictions"])
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 255}, "an ImageJ mask"
    assert mask.shape == truth.shape
    assert jaccard(mask > 0, truth) > 0.7


def test_threshold_and_output_params_are_honoured(server, tiny_project):
    path = tiny_project / "data" / "raw" / "images" / "synth_05.tif"
    status, body = _post(f"{server}/invocations", json.dumps(_request(path, {"output": "probability"}, 64)).encode())
    assert status == 200, body
    (prob,) = decode_answer(json.loads(body)["predictions"])
    assert prob.dtype == np.float32 and prob.shape == (64, 64) and 0 <= prob.min() <= prob.max() <= 1
    assert len(np.unique(prob)) > 2, "a probability map, not a mask"


def test_uncertainty_is_served_with_the_out_of_distribution_field(server, tiny_project):
    path = tiny_project / "data" / "raw" / "images" / "synth_05.tif"
    params = {"output": "uncertainty", "pixel_size_nm": 0.5}
    status, body = _post(f"{server}/invocations", json.dumps(_request(path, params, 64)).encode())
    assert status == 200, body
    (row,) = json.loads(body)["predictions"]
    (uncertainty,) = decode_answer([row])
    assert uncertainty.dtype == np.float32 and uncertainty.shape == (64, 64) and 0 <= uncertainty.min() <= 1
    assert row["ood"] == "", "a crop of a training image is in the training domain"


def _rows(*texts: str) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[t] for t in texts]}}


def _tiff(data: np.ndarray) -> str:
    return base64.b64encode(encode_tiff(data)).decode()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"dataframe_split": {"columns": ["pixels"], "data": [["x"]]}}, "wrong column"),
        (_rows("%%% not base64 %%%"), "not base64"),
        (_rows(base64.b64encode(b"GIF89a not an image").decode()), "not TIFF/PNG"),
        (_rows(_tiff(np.zeros((8, 8, 3), np.uint8) + np.arange(3, dtype=np.uint8))), "RGB"),
        (_rows(_tiff(np.zeros((300, 300), np.uint16))), "oversize"),
        (_rows(base64.b64encode(tiff_declaring(40000, 40000)).decode()), "220 bytes declaring 3.2 GB of pixels"),
        (_rows(*[_tiff(np.zeros((8, 8), np.uint16))] * 17), "more rows than register.max_rows"),
        (_rows(_tiff(np.zeros((8, 8), np.uint16))) | {"params": {"threshold": 2.0}}, "bad threshold"),
        ("not json at all", "not JSON"),
    ],
)
def test_malformed_payloads_get_a_client_error_not_a_crash(server, payload, why):
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    status, text = _post(f"{server}/invocations", body, timeout=60)
    assert 400 <= status < 500, f"{why}: HTTP {status}: {text[:300]}"
    assert "message" in text or "error" in text.lower(), text[:300]
    ping_status = urllib.request.urlopen(f"{server}/ping", timeout=10).status
    assert ping_status == 200, "the server must survive a bad request"


@pytest.mark.parametrize("params", BAD_SERVING_PARAMS)
def test_a_bad_param_gets_a_short_client_error_without_a_stack_trace(server, params):
    """MLflow passes null and NaN on to the model: the model refuses them itself, as a client error."""
    payload = _rows(_tiff(np.zeros((8, 8), np.uint16))) | {"params": params}
    status, text = _post(f"{server}/invocations", json.dumps(payload).encode(), timeout=60)
    assert status == 400, f"HTTP {status}: {text[:300]}"
    body = json.loads(text)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and next(iter(params)) in body["message"], body
    assert "stack_trace" not in body and "Traceback" not in text, text[:3000]
