"""The registered pyfunc is the CV ensemble, and re-registering unchanged inputs makes no new version."""

import json

import mlflow
import numpy as np
import pytest

from ncseg.inference import normalize, predict_proba
from ncseg.io.images import read_image
from ncseg.models.zoo import load_ensemble
from ncseg.registry.pyfunc import precision

from .conftest import run

pytestmark = pytest.mark.slow
MODEL = "models:/ncseg-nc-segmenter@champion"


def test_pyfunc_round_trip_equals_the_direct_ensemble(tiny_project):
    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(MODEL)
    image = read_image(tiny_project / "data" / "raw" / "images" / "synth_03.tif").data
    served = model.predict(image[None].astype(np.float32), params={"output": "probability"})[0]
    nets, geometry = load_ensemble(tiny_project / "models" / "unet4")
    inference = json.loads((tiny_project / "metrics" / "registry.json").read_text())
    with precision("bf16"):  # the project's serving precision (register.precision)
        direct = predict_proba(nets, geometry, normalize(image), tile=256, context=16)
    np.testing.assert_allclose(served, direct, atol=1e-5)
    fp32 = predict_proba(nets, geometry, normalize(image), tile=256, context=16)
    assert np.abs(fp32 - direct).max() < 0.02 and ((fp32 > 0.5) == (direct > 0.5)).mean() > 0.999
    mask = model.predict(image[None].astype(np.float32))[0]
    threshold = json.loads((tiny_project / "models" / "unet4" / "model.json").read_text())["threshold"]
    np.testing.assert_array_equal(mask, (direct > threshold).astype(np.float32))
    assert inference["architecture"] == "unet4" and inference["alias"] == "champion"


def test_reregistering_unchanged_inputs_creates_no_version(tiny_project):
    client = mlflow.MlflowClient(f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    before = len(client.search_model_versions("name='ncseg-nc-segmenter'"))
    out = run(["ncseg", "register"], tiny_project).stderr
    assert "kept" in out and "unchanged inputs" in out, out
    assert len(client.search_model_versions("name='ncseg-nc-segmenter'")) == before == 1
