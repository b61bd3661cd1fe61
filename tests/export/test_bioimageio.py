"""The BioImage.IO package: passes `bioimageio test`, and a consumer that knows nothing of ncseg (ONNX Runtime on
the package's file, its preprocessing done by hand) gets the served model's probabilities."""

import zipfile

import numpy as np
import onnxruntime
import pytest
import yaml

from ncseg.export.bioimageio import Source, build_checked
from ncseg.normalization import normalize

from ..serving.test_model import INFERENCE, THREE, _served


@pytest.mark.parametrize("labels", [None, THREE], ids=["binary", "three-class"])
def test_the_package_passes_bioimageio_test_and_answers_what_the_server_answers(tmp_path, labels):
    served = _served(tmp_path / "m", ["image"], labels=labels, inference=INFERENCE | {"tile": 512}, temperature=1.5)
    image = np.random.default_rng(7).integers(0, 4000, (120, 100), dtype=np.uint16)
    report = build_checked(Source(served, "models:/nc/3", "nc", "3"), image, tmp_path / "nc.zip")
    assert report.startswith("bioimageio test passed") and not list(tmp_path.glob(".*partial*"))
    with zipfile.ZipFile(tmp_path / "nc.zip") as package:
        rdf = yaml.safe_load(package.read("rdf.yaml"))
        onnx = package.read(rdf["weights"]["onnx"]["source"])
    assert rdf["config"]["ncseg"].items() >= {"registered_model": "nc", "version": "3", "cv_run_id": "run"}.items()
    steps = [p["id"] for p in rdf["inputs"][0]["preprocessing"] if p["id"] != "ensure_dtype"]  # the spec adds casts
    assert steps == ["scale_range", "clip"]
    session = onnxruntime.InferenceSession(onnx)
    (answer,) = session.run(None, {"image": normalize(image)[None, None]})  # the whole image, any size
    expected = served.segment(image.astype(np.float32), "none").probability  # fp32 served, one tile
    assert answer.shape == (1, 1 if labels is None else 3, 120, 100)
    assert np.abs(answer.reshape(expected.shape) - expected).max() < 1e-4


def test_a_model_fed_two_normalisations_takes_the_image_once_per_view_each_with_its_own_preprocessing(tmp_path):
    """The real-data study's [dataset, image] views: two inputs, the dataset window's linear scale and the image's
    percentiles, which a consumer fills with the same image and gets the served probabilities."""
    window = (100.0, 3000.0)
    served = _served(tmp_path / "m", ["dataset", "image"], window=list(window), inference=INFERENCE | {"tile": 512})
    image = np.random.default_rng(8).integers(0, 4000, (100, 110), dtype=np.uint16)
    assert build_checked(Source(served, "m", "m", None), image, tmp_path / "m.zip").startswith("bioimageio test passed")
    with zipfile.ZipFile(tmp_path / "m.zip") as package:
        rdf = yaml.safe_load(package.read("rdf.yaml"))
        session = onnxruntime.InferenceSession(package.read(rdf["weights"]["onnx"]["source"]))
    inputs = {t["id"]: [p["id"] for p in t["preprocessing"] if p["id"] != "ensure_dtype"] for t in rdf["inputs"]}
    assert inputs == {"image_dataset_window": ["scale_linear", "clip"], "image_percentiles": ["scale_range", "clip"]}
    feed = {
        "image_dataset_window": normalize(image, window)[None, None],
        "image_percentiles": normalize(image)[None, None],
    }
    (answer,) = session.run(None, feed)
    expected = served.segment(image.astype(np.float32), "none").probability
    assert np.abs(answer.reshape(expected.shape) - expected).max() < 1e-4
