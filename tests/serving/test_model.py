import base64
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import imageio.v3 as iio
import mlflow
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from mlflow.exceptions import MlflowException

from ncseg.config import UNet4Params
from ncseg.labels import LabelClass, LabelSet
from ncseg.models.geometry import Geometry
from ncseg.models.zoo import build_net
from ncseg.records import ModelCard, ServingConfig, WeightFile, sha256
from ncseg.serving import protocol
from ncseg.serving.model import NcSegmenter
from ncseg.serving.protocol import TileCost, decode_answer, decode_images, encode_request, signature

from ..builders import BAD_SERVING_PARAMS

INFERENCE = {"tile": 64, "context": 16, "batch_tiles": 2, "precision": "fp32"}
COST = TileCost(Geometry(divisor=16, offset=0, margin=0), tile=INFERENCE["tile"], context=INFERENCE["context"])
LIMITS = {"max_pixels": 32 * 32, "max_rows": 4, "max_request_pixels": 64 * 64, "cost": COST}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64_tiff(data: np.ndarray) -> str:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data)
    return _b64(buffer.getvalue())


def tiff_declaring(height: int, width: int) -> bytes:
    """A 220-byte zlib TIFF whose header declares `height` x `width` uint16 pixels (3.2 GB at 40000²)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((8, 8), np.uint16), compression="zlib", metadata=None, rowsperstrip=8)
    buffer.seek(0)
    with tifffile.TiffFile(buffer) as tif:
        tags = tif.pages.first.tags
        tags["ImageLength"].overwrite(height)
        tags["ImageWidth"].overwrite(width)
        tags["RowsPerStrip"].overwrite(height)
    return buffer.getvalue()


def _png_declaring(height: int, width: int) -> bytes:
    """A tiny 16-bit PNG whose IHDR chunk declares `height` x `width` pixels."""
    data = bytearray(iio.imwrite("<bytes>", np.zeros((8, 8), np.uint16), extension=".png"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pd.DataFrame({"pixels": ["x"]}), "column 'image'"),
        (np.zeros((1, 8, 8)), "column 'image'"),
        (pd.DataFrame({"image": []}), "empty request"),
        (pd.DataFrame({"image": ["not base64!"]}), "request image 0: not valid base64"),
        (pd.DataFrame({"image": [base64.b64encode(b"GIF89a....").decode()]}), "request image 0: not a TIFF or PNG"),
        (
            pd.DataFrame(
                {
                    "image": [
                        _b64_tiff(
                            np.dstack(
                                [np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8), np.zeros((8, 8), np.uint8)]
                            )
                        )
                    ]
                }
            ),
            "colour",
        ),
        (
            pd.DataFrame({"image": [_b64_tiff(np.zeros((8, 8), np.uint8)), _b64_tiff(np.zeros((40, 40), np.uint8))]}),
            "request image 1: 40x40 px exceeds the limit",
        ),
        (pd.DataFrame({"image": [_b64_tiff(np.full((8, 8), np.nan, np.float32))]}), "NaN"),
        (pd.DataFrame({"image": [_b64_tiff(np.zeros((5, 8, 8), np.uint8))]}), "request image 0: multi-page TIFF"),
        (
            pd.DataFrame({"image": [_b64(iio.imwrite("<bytes>", np.zeros((8, 8, 2), np.uint8), extension=".png"))]}),
            "request image 0: expected one greyscale plane, the file declares 2 values per pixel",
        ),
        (pd.DataFrame({"image": [_b64_tiff(np.zeros((8, 8), np.complex64))]}), "unsupported pixel type complex64"),
    ],
)
def test_bad_requests_are_refused_as_client_errors_naming_the_image(payload, message):
    with pytest.raises(MlflowException, match=message) as err:
        list(decode_images(payload, **LIMITS))
    assert err.value.get_http_status_code() == 400


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_microscope_files_of_any_bit_depth_arrive_as_their_pixel_values(dtype):
    image = (np.arange(12 * 10).reshape(12, 10) * 2).astype(dtype)
    (decoded,) = decode_images(encode_request([image]), **LIMITS)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, image.astype(np.float32))


def test_signature_declares_image_files_in_and_out_and_the_inference_params():
    sig = signature(0.45, "flip")
    assert sig.inputs.input_names() == ["image"] and sig.outputs.input_names() == ["tiff", "ood"]
    params = {p.name: p.default for p in sig.params.params}
    assert params == {"threshold": 0.45, "output": "mask", "tta": "flip", "pixel_size_nm": None}


def _model_folder(
    folder: Path, normalization: list[str], window: list[float] | None, labels: LabelSet | None = None
) -> torch.nn.Module:
    """A trained-looking model folder holding one tiny fold network, as `train` leaves it."""
    spec = UNet4Params(kind="unet4", base_channels=4, dropout=0.0, padding="same", l2=0.0, weight_decay=0.0)
    labels = labels or LabelSet.binary()
    torch.manual_seed(0)
    net = build_net(spec, len(normalization), labels.n_outputs).eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "fold0.pt")
    ModelCard(
        name="unet4",
        spec=spec,
        threshold=0.5,
        folds=(WeightFile(file="fold0.pt", sha256=sha256(folder / "fold0.pt")),),
        cv_jaccard_mean=0.9,
        cv_jaccard_std=0.01,
        normalization=normalization,
        intensity_window=window,
        tta="none",
        cv_run_id="run",
        labels=labels,
    ).save(folder / ModelCard.FILE)
    return net


def _serving(normalization: list[str], window: list[float] | None, **settings: object) -> dict:
    return {
        "architecture": "unet4",
        "threshold": 0.5,
        "inference": INFERENCE,
        "normalization": normalization,
        "intensity_window": window,
        "tta": "none",
        "members": 1,
        "max_pixels": 10**6,
        "max_rows": 16,
        "max_request_pixels": 4 * 10**6,
    } | settings


def _served(
    folder: Path,
    normalization: list[str],
    window: list[float] | None = None,
    labels: LabelSet | None = None,
    **settings: object,
) -> NcSegmenter:
    """The served model, loaded the way MLflow loads it: artifacts `weights` (a model folder) and `serving` (with
    `settings` overriding the defaults: limits, temperature, domain); `labels` of more than two classes serve
    their argmax."""
    _model_folder(folder / "weights", normalization, window, labels)
    if labels is not None:
        settings |= {"labels": labels.model_dump(mode="json"), "threshold": None if not labels.is_binary else 0.5}
    (folder / "serving.json").write_text(json.dumps(_serving(normalization, window, **settings)))
    model = NcSegmenter()
    model.load_context(
        mlflow.pyfunc.PythonModelContext(
            artifacts={"weights": str(folder / "weights"), "serving": str(folder / "serving.json")}, model_config={}
        )
    )
    return model


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding is where a huge image costs memory: these requests must be refused before it."""

    def refuse(data: bytes, name: str) -> np.ndarray:
        raise AssertionError(f"{name} was decoded although the request breaks a limit")

    monkeypatch.setattr(protocol, "decode_image", refuse)


@pytest.mark.parametrize("declaring", [tiff_declaring, _png_declaring])
def test_a_tiny_file_declaring_a_huge_image_is_refused_from_its_header_before_any_row_is_decoded(
    tmp_path, no_decoding, declaring
):
    model = _served(tmp_path, ["image"], max_pixels=4096 * 4096)
    huge = declaring(40000, 40000)
    assert len(huge) < 1000
    request = pd.DataFrame({"image": [_b64_tiff(np.zeros((64, 64), np.uint16)), _b64(huge)]})
    with pytest.raises(
        MlflowException, match="request image 1: 40000x40000 px exceeds the limit of 16777216 px"
    ) as err:
        model.predict(None, request)
    assert err.value.get_http_status_code() == 400


@pytest.mark.parametrize(
    ("rows", "side", "message"),
    [
        (5, 8, "5 images in one request, over the limit of 4; send fewer"),
        (3, 40, "request image 2: brings the request to 4800 px, over the limit of 4096 px per request"),
    ],
)
def test_a_request_is_capped_in_rows_and_in_pixels_all_images_together(tmp_path, no_decoding, rows, side, message):
    model = _served(tmp_path, ["image"], max_pixels=48 * 48, max_rows=4, max_request_pixels=64 * 64)
    request = pd.DataFrame({"image": [_b64_tiff(np.zeros((side, side), np.uint16))] * rows})
    with pytest.raises(MlflowException, match=message) as err:
        model.predict(None, request)
    assert err.value.get_http_status_code() == 400


@pytest.mark.parametrize(
    ("rows", "height", "width", "message"),
    [
        (1, 1, 256 * 256, "request image 0: 1x65536 px is tiled into 6291456 px of network input .* limit of 409600"),
        (4, 1, 4096, "request image 3: brings the request to 1572864 px of network input in tiles, over .* 1327104"),
    ],
)
def test_a_thin_strip_is_refused_from_its_header_by_the_tiles_it_would_cost(
    tmp_path, no_decoding, rows, height, width, message
):
    """A strip one pixel high within the pixel limits is padded to whole tiles along all its length (here 24x the
    work of a square of as many pixels): refused before decoding, alone or several to a request."""
    model = _served(tmp_path, ["image"], max_pixels=256 * 256, max_request_pixels=4 * 256 * 256)
    strips = pd.DataFrame({"image": [_b64(tiff_declaring(height, width))] * rows})
    with pytest.raises(MlflowException, match=message) as err:
        model.predict(None, strips)
    assert err.value.get_http_status_code() == 400
    square = pd.DataFrame({"image": [_b64(tiff_declaring(256, 256))] * 4})
    limits = {"max_pixels": 256 * 256, "max_rows": 16, "max_request_pixels": 4 * 256 * 256}
    decode_images(square, **limits, cost=model.cost)  # four of the largest squares pass every header check


def test_a_served_request_past_the_servers_timeout_stops_between_tile_batches(tmp_path, monkeypatch):
    """The scoring server answers the client 504 at its request timeout while the worker computes on: the model
    stops at its next batch of tiles instead of computing for nobody. Outside a server nothing is cut short."""
    model = _served(tmp_path, ["image"])
    clock, batches = [0.0], []
    forward = model.nets[0].forward

    def one_second_a_batch(x: torch.Tensor) -> torch.Tensor:
        batches.append(len(x))
        clock[0] += 1.0
        return forward(x)

    monkeypatch.setattr(model.nets[0], "forward", one_second_a_batch)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    request = encode_request([np.zeros((32, 32 * 20), np.uint16)])  # 20 tiles, 10 batches of 2
    model.predict(None, request)
    assert len(batches) == 10, "in process the whole image is computed"
    batches.clear()
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")  # what `mlflow models serve` sets
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "3")
    with pytest.raises(MlflowException, match="request image 0: stopped after 8 of 20 tiles") as err:
        model.predict(None, request)
    assert err.value.get_http_status_code() == 504 and len(batches) == 4


class Smoothing(torch.nn.Module):
    """A 3x3 mean filter: as cheap a network as there is, so a test can afford a 1024² image under tracemalloc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 1 / 9)
        self.geometry, self.outputs = Geometry(divisor=1, offset=0, margin=0), 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _peak_bytes(compute) -> int:
    """The most memory numpy held at once while `compute` ran (torch's own tensors are not traced: a batch of
    tiles is what the tiler may hold)."""
    tracemalloc.start()
    try:
        compute()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_micrograph_costs_the_memory_of_its_answers_not_of_float_copies_of_it(tmp_path):
    """What `ncseg predict` runs on an 8k-16k montage: no padded, normalised, weight or float64 copy of the image,
    neither per view nor per batch. With one view it costs the two float32 maps it returns and a few batches of
    tiles; with several, the spread's two float64 running sums, the probability's float32 sum, a view's map while
    the next is computed, and its answer."""
    tiling = INFERENCE | {"tile": 256, "batch_tiles": 1}
    model = _served(tmp_path, ["image"], temperature=0.8, inference=tiling)
    model.nets, model.geometry = [Smoothing().eval()], Geometry(divisor=1, offset=0, margin=0)
    image = np.random.default_rng(12).integers(0, 4000, (1024, 1024), dtype=np.uint16)
    model.segment(image[:64, :64], "flip")  # its modules imported before memory is counted
    answer, batches = image.size * 4, 8 * tiling["batch_tiles"] * tiling["tile"] ** 2 * 4  # float32 maps and tiles
    assert _peak_bytes(lambda: model.segment(image, "none")) < 2 * answer + batches
    assert _peak_bytes(lambda: model.segment(image, "flip")) < (2 * 2 + 1 + 2 + 1) * answer + batches


@pytest.mark.parametrize("params", BAD_SERVING_PARAMS)
def test_a_bad_param_is_a_short_client_error(tmp_path, params):
    """What MLflow passes through (null, NaN) or a direct caller sends: HTTP 400 with one line, never a crash."""
    model = _served(tmp_path, ["image"])
    with pytest.raises(MlflowException) as err:
        model.predict(None, encode_request([np.zeros((64, 64), np.uint16)]), params=params)
    assert err.value.get_http_status_code() == 400 and err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "\n" not in err.value.message and len(err.value.message) < 120, err.value.message
    assert next(iter(params)) in err.value.message


@pytest.mark.parametrize("normalization", [["image"], ["dataset"], ["dataset", "image"]])
def test_served_model_feeds_the_networks_the_views_they_were_trained_on(tmp_path, normalization):
    """The served model applies the card's views and dataset window, not a default normalisation."""
    from ncseg.inference.tiling import predict_proba
    from ncseg.normalization import views

    window = [10.0, 90.0] if "dataset" in normalization else None
    model = _served(tmp_path, normalization, window)
    net = build_net(ModelCard.load(tmp_path / "weights" / ModelCard.FILE).spec, len(normalization))
    net.load_state_dict(torch.load(tmp_path / "weights" / "fold0.pt", weights_only=True))

    image = np.random.default_rng(0).uniform(0, 120, (70, 90)).astype(np.float32)
    request = encode_request([image, image[:40]])
    served = decode_answer(model.predict(None, request, params={"output": "probability"}))
    expected = predict_proba([net.eval()], net.geometry, views(image, normalization, window), **INFERENCE)
    np.testing.assert_allclose(served[0], expected, atol=1e-5)
    assert served[1].shape == (40, 90)
    mask = decode_answer(model.predict(None, request, params={"threshold": 0.5}))[0]
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, np.where(served[0] > 0.5, 255, 0))


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory) -> Path:
    """The folder `register` logs for a tiny model folder, downloaded from a fresh SQLite-backed store."""
    from ncseg.registry.promote import _log_pyfunc

    tmp = tmp_path_factory.mktemp("logged")
    _model_folder(tmp / "unet4", ["image"], None)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("pyfunc", artifact_location=(tmp / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            card = ModelCard.load(tmp / "unet4" / ModelCard.FILE)
            uri = _log_pyfunc(tmp / "unet4", card, ServingConfig.model_validate(_serving(["image"], None)))
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp / "model")))
    finally:
        mlflow.set_tracking_uri(previous)


def test_the_logged_model_is_code_and_weights_not_a_pickle(logged_model):
    """MLflow builds the model by running model_code.py with the ncseg code logged beside it: no pickle to run."""
    assert not [f for f in logged_model.rglob("*") if f.suffix in (".pkl", ".pickle", ".cloudpickle")]
    flavor = mlflow.models.Model.load(logged_model).flavors["python_function"]
    assert Path(flavor["model_code_path"]).name == "model_code.py" and "python_model" not in flavor
    assert (logged_model / "code" / "ncseg" / "serving" / "model.py").is_file(), "the ncseg code travels with it"


def test_a_logged_model_whose_weights_changed_is_refused_in_one_line_before_it_loads(logged_model, tmp_path):
    """`ncseg predict` and `ncseg serve` check the weights against the model card first (registry.lookup); loading
    them (load_ensemble) would refuse too, but with a RecordError traceback, from the server at its start."""
    import shutil

    from ncseg.predict import load_segmenter
    from ncseg.registry.lookup import ModelLookupError

    model = Path(shutil.copytree(logged_model, tmp_path / "model"))
    weights = model / "artifacts" / "weights" / "fold0.pt"
    weights.write_bytes(weights.read_bytes() + b"tampered")
    with pytest.raises(ModelLookupError, match=f"^{model}: its weights are not the ones it was registered with: "):
        load_segmenter(str(model), f"sqlite:///{tmp_path / 'mlflow.db'}")


LOAD_AND_PREDICT = """
import sys, numpy as np, mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
from ncseg.serving.protocol import decode_answer, encode_request
(mask,) = decode_answer(model.predict(encode_request([np.zeros((64, 64), np.uint16)]), params={"output": "mask"}))
assert mask.shape == (64, 64), mask.shape
"""


def test_the_logged_model_loads_with_pickles_disallowed_and_predicts_without_type_hint_warnings(logged_model):
    """In a fresh process: MLflow warns about predict's type hints once per process, when the class is defined."""
    env = os.environ | {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(logged_model)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "type hint" not in loaded.stderr.lower(), loaded.stderr[-3000:]


def test_a_request_can_ask_for_test_time_augmentation_and_gets_exactly_it(tmp_path):
    from ncseg.inference.tta import predict_tta
    from ncseg.normalization import views

    model = _served(tmp_path, ["image"])
    image = np.random.default_rng(5).uniform(0, 100, (40, 56)).astype(np.float32)
    request = encode_request([image])
    served = decode_answer(model.predict(None, request, params={"output": "probability", "tta": "d4"}))[0]
    expected = predict_tta(model.nets, model.geometry, views(image, ["image"], None), "d4", **INFERENCE)
    np.testing.assert_allclose(served, expected, atol=1e-6)
    plain = decode_answer(model.predict(None, request, params={"output": "probability"}))[0]
    assert not np.allclose(served, plain, atol=1e-4), "the served default (tta: none here) is plain inference"
    with pytest.raises(MlflowException, match="tta must be one of") as err:
        model.predict(None, request, params={"tta": "d8"})
    assert err.value.get_http_status_code() == 400


def test_an_animated_png_is_refused_at_its_header():
    from ncseg.io.images import ImageError, read_header

    png = _png_declaring(8, 8)
    animated = png[:33] + (8).to_bytes(4, "big") + b"acTL" + (50).to_bytes(4, "big") + bytes(8) + png[33:]
    with pytest.raises(ImageError, match="animated PNG"):
        read_header(animated, "request image 0")
    assert read_header(png, "request image 0").pixels == 64


def test_with_one_view_the_served_uncertainty_is_4p_1_minus_p_of_its_probability_at_no_extra_pass(tmp_path):
    """One view has no spread; the four mirror images it once took cost four more passes per image, and rank errors
    worse than 4p(1-p) on the real data (ncseg.uncertainty)."""
    model = _served(tmp_path, ["image"], temperature=2.0)
    image = np.random.default_rng(6).uniform(0, 100, (40, 56)).astype(np.float32)
    request = encode_request([image])
    prob = decode_answer(model.predict(None, request, params={"output": "probability"}))[0]
    served = decode_answer(model.predict(None, request, params={"output": "uncertainty"}))[0]
    assert served.dtype == np.float32 and served.shape == (40, 56)
    np.testing.assert_allclose(served, 4 * prob * (1 - prob), atol=1e-6)
    assert 0.0 < served.max() <= 1.0


@pytest.mark.parametrize("tta", ["flip", "d4"])
def test_with_several_views_probability_and_uncertainty_are_their_mean_and_spread(tmp_path, tta):
    """Each member's calibrated view is one sample: the uncertainty is twice their standard deviation, and the
    probability the calibrated mean of the same views (the one `predict_tta` gives), not a second set of passes."""
    from ncseg.calibration import apply
    from ncseg.inference.tta import predict_tta, predict_views
    from ncseg.normalization import views
    from ncseg.uncertainty import pixel_uncertainty

    model = _served(tmp_path, ["image"], temperature=2.0)
    model.nets.append(_model_folder(tmp_path / "other", ["image"], None).to(memory_format=torch.channels_last))
    with torch.no_grad():
        next(model.nets[1].parameters()).mul_(0.8)  # a second member that disagrees a little
    image = np.random.default_rng(6).uniform(0, 100, (40, 40)).astype(np.float32)
    request = encode_request([image])
    answers = {
        output: decode_answer(model.predict(None, request, params={"output": output, "tta": tta}))[0]
        for output in ("probability", "uncertainty")
    }
    planes = views(image, ["image"], None)
    maps = predict_views(model.nets, model.geometry, planes, tta, **INFERENCE)
    np.testing.assert_allclose(answers["uncertainty"], pixel_uncertainty(apply(m, 2.0) for m in maps), atol=1e-6)
    mean = predict_tta(model.nets, model.geometry, planes, tta, **INFERENCE)
    np.testing.assert_allclose(answers["probability"], apply(mean, 2.0), atol=1e-6)
    assert answers["uncertainty"].max() > 0.0


def _domain() -> dict:
    """The training domain of a calibrated (0.5 nm) HAADF-like series."""
    from ncseg.ood import training_domain

    class Image:
        def __init__(self, seed: int) -> None:
            rng = np.random.default_rng(seed)
            self.raw = _haadf_like(rng)
            self.pixel_size_nm = 0.5

    return training_domain([Image(seed) for seed in range(3)]).model_dump()


def _haadf_like(rng: np.random.Generator) -> np.ndarray:
    """Bright squares on a darker, noisy support."""
    image = rng.normal(1000, 60, (64, 64))
    for y, x in rng.integers(4, 52, (6, 2)):
        image[y : y + 8, x : x + 8] += 1500
    return image.astype(np.float32)


def test_the_served_model_flags_an_image_unlike_its_training_data(tmp_path):
    model = _served(tmp_path, ["image"], domain=_domain())
    image = _haadf_like(np.random.default_rng(10))
    request = encode_request([image, image.max() - image])
    answer = model.predict(None, request, params={"pixel_size_nm": 0.5})
    assert answer["ood"].iloc[0] == "" and "inverted" in answer["ood"].iloc[1]
    (scale,) = model.predict(None, encode_request([image]), params={"pixel_size_nm": 2.5})["ood"]
    assert "pixel size 2.5 nm is outside the training range" in scale
    assert model.predict(None, encode_request([image]))["ood"].iloc[0] == "", "no pixel size: the scale is unchecked"


def test_a_model_registered_without_a_training_domain_flags_nothing(tmp_path):
    model = _served(tmp_path, ["image"])
    image = _haadf_like(np.random.default_rng(11))
    answer = model.predict(None, encode_request([image.max() - image]), params={"pixel_size_nm": 50.0})
    assert answer["ood"].tolist() == [""]


def test_through_mlflow_the_uncertainty_and_the_pixel_size_param_pass_its_schema(logged_model):
    """What `ncseg predict` sends: MLflow enforces the signature's params (a double with no default) first."""
    model = mlflow.pyfunc.load_model(str(logged_model))
    request = encode_request([np.zeros((64, 64), np.uint16)])
    answer = model.predict(request, params={"output": "uncertainty", "pixel_size_nm": 0.5})
    (uncertainty,) = decode_answer(answer)
    assert uncertainty.dtype == np.float32 and uncertainty.shape == (64, 64)
    assert answer["ood"].tolist() == [""]


THREE = LabelSet(
    (
        LabelClass(name="background", kind="region", colour="#000000"),
        LabelClass(name="support", kind="region", colour="#4060ff"),
        LabelClass(name="pt", kind="particles", colour="#ff3030"),
    )
)


def test_a_three_class_model_serves_its_class_map_probabilities_and_foreground_mask_and_takes_no_threshold(tmp_path):
    model = _served(tmp_path, ["image"], labels=THREE)
    image = np.random.default_rng(3).integers(0, 4000, (40, 56), dtype=np.uint16)
    request = encode_request([image])
    asked = {out: decode_answer(model.predict(None, request, {"output": out}))[0] for out in protocol.OUTPUTS}
    prob, classes = asked["probability"], asked["classes"]
    assert prob.shape == (3, 40, 56) and np.allclose(prob.sum(axis=0), 1.0, atol=1e-5)
    assert classes.dtype == np.uint8 and np.array_equal(classes, prob.argmax(axis=0))
    assert np.array_equal(asked["mask"], np.where(classes > 0, 255, 0))
    top = np.sort(prob, axis=0)
    assert np.allclose(asked["uncertainty"], 1 - (top[-1] - top[-2]) ** 2, atol=1e-6)
    with pytest.raises(MlflowException, match="argmax") as err:
        model.predict(None, request, {"threshold": 0.5})
    assert err.value.get_http_status_code() == 400
    assert {p.name: p.default for p in signature(None, "none").params.params}["threshold"] is None


def test_a_three_class_models_temperature_softens_its_probabilities_and_leaves_its_class_map(tmp_path):
    from ncseg.calibration import apply_classes

    image = np.random.default_rng(3).integers(0, 4000, (40, 56), dtype=np.uint16)
    request = encode_request([image])
    answers = {}
    for t in (1.0, 2.0):
        model = _served(tmp_path / str(t), ["image"], labels=THREE, temperature=t)
        answers[t] = [decode_answer(model.predict(None, request, {"output": o}))[0] for o in ("probability", "classes")]
    (raw, classes), (calibrated, same) = answers[1.0], answers[2.0]
    assert np.allclose(calibrated, apply_classes(raw, 2.0), atol=1e-6) and not np.allclose(calibrated, raw)
    assert np.array_equal(same, classes)


def test_a_binary_model_answers_its_mask_as_a_class_map_of_zeros_and_ones(tmp_path):
    model = _served(tmp_path, ["image"])
    request = encode_request([np.random.default_rng(4).integers(0, 4000, (32, 32), dtype=np.uint16)])
    classes = decode_answer(model.predict(None, request, {"output": "classes", "threshold": 0.5}))[0]
    mask = decode_answer(model.predict(None, request, {"output": "mask", "threshold": 0.5}))[0]
    assert classes.dtype == np.uint8 and np.array_equal(classes * 255, mask)


def test_the_class_map_is_numpys_argmax_ties_to_the_first_class():
    from ncseg.serving.model import argmax_classes

    prob = np.random.default_rng(6).random((4, 9, 11)).astype(np.float32)
    prob[:, 0, :3] = 0.25  # a four-way tie
    prob[2, 1, 1] = prob[3, 1, 1] = 2.0
    assert np.array_equal(argmax_classes(prob), np.argmax(prob, axis=0))
