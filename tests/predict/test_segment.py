"""One image, one set of network passes: the probability, the uncertainty and the out-of-domain reason that every
output of `ncseg predict` (and the served model's answer) is made from."""

import copy
import hashlib

import numpy as np
import pytest
import torch

from ncseg.config import ParticleParams
from ncseg.inference.tiling import RawViews, predict_proba
from ncseg.io.images import write_tiff
from ncseg.predict import Segmenter, run

from ..serving.test_model import _served

PARTICLES = ParticleParams(min_area_nm2=1.0, min_distance_nm=2.0)


def _counted(net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every batch of tiles `net` is run on, by the digest of its pixels: a view run twice shows as a repeat."""
    seen: list[str] = []
    forward = net.forward

    def counting(x: torch.Tensor) -> torch.Tensor:
        seen.append(hashlib.sha256(x.float().contiguous().numpy().tobytes()).hexdigest())
        return forward(x)

    monkeypatch.setattr(net, "forward", counting)
    return seen


@pytest.mark.parametrize(("tta", "views"), [("none", 1), ("flip", 4), ("d4", 8)])
def test_each_image_is_run_through_each_network_once_per_view_and_tile_batch(tmp_path, monkeypatch, tta, views):
    """The mean of the views is the probability and their spread the uncertainty: no view is computed twice (today
    `--tta d4` ran 2 x 8 views per image, `none` 1 + 4)."""
    served = _served(tmp_path / "model", ["image"])
    second = copy.deepcopy(served.nets[0])  # a two-network ensemble: each member sees each batch once
    with torch.no_grad():
        next(second.parameters()).mul_(0.9)
    served.nets.append(second)
    image = np.random.default_rng(3).integers(0, 4000, (40, 70), dtype=np.uint16)
    write_tiff(tmp_path / "img.tif", image, 0.5)
    source = RawViews.of(image, served.config.normalization, served.config.intensity_window)
    batches = _counted(served.nets[0], monkeypatch)
    predict_proba(served.nets[:1], served.geometry, source, **served.config.inference.tiling())
    per_view = len(batches)
    assert per_view > 1, "the image is several tile batches, so a batch run twice would be seen"
    batches.clear()
    members = [batches, _counted(second, monkeypatch)]
    report = run(Segmenter(served, "model"), [tmp_path / "img.tif"], tmp_path / "out", PARTICLES, tta=tta)
    assert report.failed == [] and (tmp_path / "out" / "uncertainty" / "img.tif").is_file()
    for seen in members:
        assert len(seen) == views * per_view, "forward calls per network: views x tile batches"
        assert len(set(seen)) == len(seen), "a batch of tiles was run twice"


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_predict_is_made_of_exactly_what_the_server_answers(tmp_path, tta):
    """Served and predicted answers come from one function: the same image gives the same maps either way."""
    from ncseg.io.images import Micrograph
    from ncseg.serving.protocol import decode_answer, encode_request

    served = _served(tmp_path / "model", ["image"], temperature=1.5)
    image = np.random.default_rng(4).integers(0, 4000, (36, 52), dtype=np.uint16)
    seg = Segmenter(served, "model").segment(Micrograph(image, 0.5, tmp_path / "img.tif"), threshold=0.4, tta=tta)
    request = encode_request([image])
    answer = {
        output: decode_answer(served.predict(None, request, {"output": output, "tta": tta, "threshold": 0.4}))[0]
        for output in ("mask", "probability", "uncertainty")
    }
    np.testing.assert_array_equal(answer["probability"], seg.probability)
    np.testing.assert_array_equal(answer["uncertainty"], seg.uncertainty)
    np.testing.assert_array_equal(answer["mask"] > 0, seg.mask)
    assert seg.threshold == 0.4 and seg.pixel_size_nm == 0.5 and seg.ood == ""
