import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from ncseg.registry.pyfunc import check_batch, signature


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([["a", "b"]], "numeric"),
        (np.zeros(5), "height, width"),
        (np.zeros((1, 8, 8, 3)), "colour"),
        (np.zeros((1, 0, 8)), "empty"),
        (np.zeros((1, 40, 40)), "exceeds the limit"),
        (np.full((1, 8, 8), np.nan), "NaN"),
    ],
)
def test_bad_batches_are_refused_as_client_errors(payload, message):
    with pytest.raises(MlflowException, match=message) as err:
        check_batch(payload, max_pixels=32 * 32)
    assert err.value.get_http_status_code() == 400


def test_a_single_image_becomes_a_batch_of_one_in_float32():
    batch = check_batch(np.arange(12, dtype=np.uint16).reshape(3, 4), max_pixels=100)
    assert batch.shape == (1, 3, 4) and batch.dtype == np.float32


def test_signature_declares_float32_images_and_the_inference_params():
    sig = signature(0.45)
    assert sig.inputs.numpy_types()[0] == np.float32
    params = {p.name: p.default for p in sig.params.params}
    assert params == {"threshold": 0.45, "output": "mask"}
