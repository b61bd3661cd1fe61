import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from mlflow.exceptions import MlflowException

from ncseg.registry.pyfunc import decode_answer, decode_images, encode_request, signature


def _b64_tiff(data: np.ndarray) -> str:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data)
    return base64.b64encode(buffer.getvalue()).decode()


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
    ],
)
def test_bad_requests_are_refused_as_client_errors_naming_the_image(payload, message):
    with pytest.raises(MlflowException, match=message) as err:
        decode_images(payload, max_pixels=32 * 32)
    assert err.value.get_http_status_code() == 400


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_microscope_files_of_any_bit_depth_arrive_as_their_pixel_values(dtype):
    image = (np.arange(12 * 10).reshape(12, 10) * 2).astype(dtype)
    (decoded,) = decode_images(encode_request([image]), max_pixels=1000)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, image.astype(np.float32))


def test_signature_declares_image_files_in_and_out_and_the_inference_params():
    sig = signature(0.45)
    assert sig.inputs.input_names() == ["image"] and sig.outputs.input_names() == ["tiff"]
    params = {p.name: p.default for p in sig.params.params}
    assert params == {"threshold": 0.45, "output": "mask"}


@pytest.mark.parametrize("normalization", [["image"], ["dataset"], ["dataset", "image"]])
def test_served_model_feeds_the_networks_the_views_they_were_trained_on(tmp_path, normalization):
    """The served model applies the card's views and dataset window, not a default normalisation."""
    from types import SimpleNamespace

    import torch

    from ncseg.config import UNet4Params
    from ncseg.inference.tiling import predict_proba
    from ncseg.models.zoo import build_net
    from ncseg.normalization import views
    from ncseg.records import ModelCard, WeightFile, sha256
    from ncseg.registry.pyfunc import NcSegmenter

    spec = UNet4Params(kind="unet4", base_channels=4, dropout=0.0, padding="same", l2=0.0, weight_decay=0.0)
    torch.manual_seed(0)
    net = build_net(spec, len(normalization)).eval()
    torch.save(net.state_dict(), tmp_path / "fold0.pt")
    window = [10.0, 90.0] if "dataset" in normalization else None
    ModelCard(
        name="unet4",
        spec=spec,
        threshold=0.5,
        folds=(WeightFile(file="fold0.pt", sha256=sha256(tmp_path / "fold0.pt")),),
        cv_jaccard_mean=0.9,
        cv_jaccard_std=0.01,
        normalization=normalization,
        intensity_window=window,
        cv_run_id="run",
    ).save(tmp_path / ModelCard.FILE)
    inference = {"tile": 64, "context": 16, "batch_tiles": 2, "precision": "fp32"}
    serving = {
        "threshold": 0.5,
        "inference": inference,
        "normalization": normalization,
        "intensity_window": window,
        "max_pixels": 10**6,
    }
    (tmp_path / "serving.json").write_text(json.dumps(serving))
    model = NcSegmenter()
    model.load_context(SimpleNamespace(artifacts={"weights": str(tmp_path), "serving": str(tmp_path / "serving.json")}))

    image = np.random.default_rng(0).uniform(0, 120, (70, 90)).astype(np.float32)
    request = encode_request([image, image[:40]])
    served = decode_answer(model.predict(None, request, params={"output": "probability"}))
    expected = predict_proba([net], net.geometry, views(image, normalization, window), **inference)
    np.testing.assert_allclose(served[0], expected, atol=1e-5)
    assert served[1].shape == (40, 90)
    mask = decode_answer(model.predict(None, request, params={"threshold": 0.5}))[0]
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, np.where(served[0] > 0.5, 255, 0))
