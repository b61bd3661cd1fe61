"""The real `mlflow models serve` on loopback: a demo image in, its mask out; bad payloads get a 4xx."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from ncseg.cli import serve_command
from ncseg.io.images import read_image, read_mask
from ncseg.metrics import jaccard

from .conftest import project_env

pytestmark = pytest.mark.slow
STARTUP_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes, timeout: float = 120) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def server(tiny_project, tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve") / "server.log").open("w")
    command = serve_command("models:/ncseg-nc-segmenter@champion", "127.0.0.1", port)
    process = subprocess.Popen(
        command,
        cwd=tiny_project,
        env=project_env(tiny_project),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"server exited early, see {log.name}"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"server did not answer /ping within {STARTUP_S} s, see {log.name}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_served_model_segments_a_demo_image(server, tiny_project):
    image = read_image(tiny_project / "data" / "raw" / "images" / "synth_05.tif").data
    truth = read_mask(tiny_project / "data" / "raw" / "masks" / "synth_05.tif")
    status, body = _post(f"{server}/invocations", json.dumps({"inputs": image[None].tolist()}).encode())
    assert status == 200, body
    mask = np.asarray(json.loads(body)["predictions"])[0] > 0.5
    assert mask.shape == truth.shape
    assert jaccard(mask, truth) > 0.7


def test_threshold_and_output_params_are_honoured(server, tiny_project):
    image = read_image(tiny_project / "data" / "raw" / "images" / "synth_05.tif").data[:64, :64]
    payload = {"inputs": image[None].tolist(), "params": {"output": "probability"}}
    status, body = _post(f"{server}/invocations", json.dumps(payload).encode())
    prob = np.asarray(json.loads(body)["predictions"])[0]
    assert status == 200 and prob.shape == (64, 64) and 0 <= prob.min() <= prob.max() <= 1
    assert len(np.unique(prob)) > 2, "a probability map, not a mask"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"inputs": [[["a", "b"], ["c", "d"]]]}, "wrong dtype"),
        ({"inputs": [1.0, 2.0, 3.0]}, "1-D"),
        ({"inputs": np.zeros((1, 8, 8, 3)).tolist()}, "RGB"),
        ({"inputs": []}, "empty"),
        ({"inputs": np.zeros((1, 300, 300)).tolist()}, "oversize"),
        ({"inputs": np.zeros((1, 8, 8)).tolist(), "params": {"threshold": 2.0}}, "bad threshold"),
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
