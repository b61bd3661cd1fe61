"""The registered pyfunc is the CV ensemble, re-registering unchanged inputs makes no new version, and
registrations into one store take turns."""

import contextlib
import json
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from ncseg import calibration
from ncseg.config import load_params
from ncseg.inference.tiling import predict_proba
from ncseg.io.images import read_image, read_mask
from ncseg.metrics import jaccard
from ncseg.models.zoo import load_ensemble
from ncseg.normalization import normalize
from ncseg.records import ModelCard
from ncseg.serving.protocol import decode_answer, encode_request
from ncseg.tracking.store import registry_lock

from .conftest import project_env, run

pytestmark = pytest.mark.slow
MODEL = "models:/ncseg-nc-segmenter@champion"


def test_pyfunc_round_trip_equals_the_direct_ensemble(tiny_project):
    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(MODEL)
    image = read_image(tiny_project / "data" / "raw" / "images" / "synth_03.tif").data
    request = encode_request([image])
    served = decode_answer(model.predict(request, params={"output": "probability"}))[0]
    nets, geometry = load_ensemble(tiny_project / "models" / "unet4")
    nets = [net.to(memory_format=torch.channels_last) for net in nets[:1]]  # register.members: 1; served layout
    inference = json.loads((tiny_project / "metrics" / "registry.json").read_text())
    card = ModelCard.load(tiny_project / "models" / "unet4" / ModelCard.FILE)
    precision = load_params(tiny_project / "params.yaml").inference.precision  # what the served config holds
    raw = predict_proba(nets, geometry, normalize(image), tile=256, context=16, batch_tiles=4, precision=precision)
    assert card.temperature != 1.0, "CV fitted a temperature on the out-of-fold predictions"
    direct = calibration.apply(raw, card.temperature)
    # Served and direct run the same kernels on the same CPU: equal up to float32 rounding of the codec.
    np.testing.assert_allclose(served, direct, atol=1e-5)  # the served probability is the calibrated one
    mask = decode_answer(model.predict(request))[0] > 0
    np.testing.assert_array_equal(mask, direct > card.threshold)  # the threshold was chosen on that scale
    assert inference["architecture"] == "unet4" and inference["alias"] == "champion"


def test_the_served_bf16_mask_is_the_fp32_mask_a_user_would_get(tiny_project):
    """bf16 is a speed choice that must not change what a user sees: the mask and its score. A bound on the raw
    probabilities cannot hold on every CPU (AMX and AVX-512-BF16 kernels round differently; one pixel of 65 536
    differed by 0.0204 on an AMD EPYC), and it is not what anyone reads. A pixel can only flip where the fp32
    probability lies within the bf16 error of the threshold, i.e. on a particle's edge: the bound below is the
    README's documented agreement (> 99.9 % of pixels). The score follows from it: flipping a share f of the
    pixels moves a Jaccard by at most f / (the union's share, >= 0.2 on these two images), so by < 0.005, below
    every between-fold std the study has measured."""
    card = ModelCard.load(tiny_project / "models" / "unet4" / ModelCard.FILE)
    nets, geometry = load_ensemble(tiny_project / "models" / "unet4")
    nets = [net.to(memory_format=torch.channels_last) for net in nets[:1]]
    masks, truths = {}, []
    for name in ("synth_03", "synth_07"):
        image = normalize(read_image(tiny_project / "data" / "raw" / "images" / f"{name}.tif").data)
        truths.append(read_mask(tiny_project / "data" / "raw" / "masks" / f"{name}.tif"))
        for precision in ("bf16", "fp32"):
            p = predict_proba(nets, geometry, image, tile=256, context=16, batch_tiles=4, precision=precision)
            masks.setdefault(precision, []).append(calibration.apply(p, card.temperature) > card.threshold)
    agreement = np.mean([(a == b).mean() for a, b in zip(masks["bf16"], masks["fp32"], strict=True)])
    assert agreement > 0.999, f"bf16 and fp32 masks agree on {agreement:.5f} of the pixels"
    scores = {k: np.mean([jaccard(m, t) for m, t in zip(v, truths, strict=True)]) for k, v in masks.items()}
    assert abs(scores["bf16"] - scores["fp32"]) < 0.005, scores


def test_reregistering_unchanged_inputs_creates_no_version(tiny_project):
    client = mlflow.MlflowClient(f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    before = len(client.search_model_versions("name='ncseg-nc-segmenter'"))
    out = run(["ncseg", "register"], tiny_project).stderr
    assert "kept" in out and "unchanged inputs" in out, out
    assert "-> @champion" in out and "holds @champion" in out, "v1 holds champion: say so, not @none"
    assert json.loads((tiny_project / "metrics" / "registry.json").read_text())["alias"] == "champion"
    assert len(client.search_model_versions("name='ncseg-nc-segmenter'")) == before == 1
    version = client.get_model_version("ncseg-nc-segmenter", "1")
    assert version.tags["decision"] == "champion" and "beats the classical baseline" in version.tags["decision_reason"]
    assert version.tags["cv_run_id"] and client.get_registered_model("ncseg-nc-segmenter").description


def test_a_registration_waits_for_the_one_in_progress(tiny_project):
    """Two experiments of `dvc queue start -j 2` register at once into the project's store: the second must wait
    for the first (they read the same champion; both creating a new model's tags failed in CI with
    sqlite3.IntegrityError), not fail or decide on a stale champion."""
    uri = f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}"
    name = "ncseg-lock-test"
    client = mlflow.MlflowClient(uri)
    try:
        with registry_lock(uri):  # a registration in progress
            second = subprocess.Popen(
                ["ncseg", "register", "-S", f"register.model_name={name}"],
                cwd=tiny_project,
                env=project_env(tiny_project),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_until_it_opens(second, tiny_project / "mlruns" / ".mlflow-registry.lock")
            time.sleep(1)
            assert second.poll() is None, second.communicate()[0]  # it waits on the lock, not done or failed
            assert not client.search_registered_models(f"name='{name}'")
        out = second.communicate(timeout=300)[0]
        assert second.returncode == 0, out
        assert f"registered {name} v1" in out, out
    finally:
        run(["ncseg", "register"], tiny_project)  # metrics/registry.json names the study's model again


def _wait_until_it_opens(process: subprocess.Popen, lock: Path, timeout_s: float = 120) -> None:
    """Until `process` holds `lock` open: it has reached the lock and waits there (one that never takes the lock
    would finish or time out here)."""
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):  # a descriptor closed while it is read
            if any(fd.resolve() == lock.resolve() for fd in fds.iterdir()):
                return
        time.sleep(0.2)
    ended = process.poll() is not None
    raise AssertionError(f"ncseg register never waited on {lock}: {process.communicate()[0] if ended else 'running'}")
