"""ONNX Runtime as the served model's backend: the same logits as torch for any tile size and batch, the same
answer through the whole served computation, and `auto` choosing it only where torch would run fp32 on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncseg.config import load_params
from ncseg.inference import runtime
from ncseg.inference.onnx import OnnxNet, runners
from ncseg.models.zoo import build_net

from ..conftest import ROOT
from ..serving.test_model import INFERENCE, THREE, _served


@pytest.mark.parametrize("outputs", [1, 3])
def test_a_session_answers_the_logits_of_its_network_for_any_tile_size_and_batch(outputs):
    torch.manual_seed(0)
    net = build_net(load_params(ROOT / "params.yaml").models["unet4"], 2, outputs).eval()
    session = OnnxNet(net)
    assert (session.outputs, session.geometry) == (outputs, net.geometry)
    for batch, side in [(1, 64), (3, 96), (2, 160)]:
        tiles = torch.rand(batch, 2, side, side)
        with torch.no_grad():
            expected = net(tiles)
        assert torch.allclose(session(tiles), expected, atol=1e-4), (batch, side)


def test_auto_is_onnx_runtime_only_where_torch_would_run_fp32_on_a_cpu(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)  # an AVX2 CPU
    assert runtime.effective_backend("auto", "auto", cpu) == "onnxruntime"
    assert runtime.effective_backend("auto", "bf16", cpu) == "torch"  # bf16 asked for: torch's autocast
    assert runtime.effective_backend("auto", "fp32", gpu) == "torch"
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)  # AMX or AVX-512 BF16
    assert runtime.effective_backend("auto", "auto", cpu) == "torch"
    assert runtime.effective_backend("torch", "fp32", cpu) == "torch"
    assert runtime.effective_backend("onnxruntime", "bf16", cpu) == "onnxruntime"  # as written
    net = build_net(load_params(ROOT / "params.yaml").models["unet4"], 1)
    assert runners([net], "auto", "auto") == [net]  # torch's own module where torch is faster


@pytest.mark.parametrize("labels", [None, THREE], ids=["binary", "three-class"])
def test_the_served_answer_is_the_same_with_either_backend(tmp_path, labels):
    """Tiled (64 px tiles over 300 x 260), flipped views, calibrated: masks agree on >= 99.9 % of pixels (the
    issue's bar for a default), probabilities to 1e-4."""
    image = np.random.default_rng(3).integers(0, 4000, (300, 260), dtype=np.uint16)
    answers = {}
    for backend in ("torch", "onnxruntime"):
        served = _served(tmp_path / backend, ["image"], labels=labels, inference=INFERENCE | {"backend": backend})
        assert isinstance(served.runners[0], OnnxNet) == (backend == "onnxruntime")
        answers[backend] = served.segment(image, "flip")
    torch_maps, ort_maps = answers["torch"], answers["onnxruntime"]
    assert np.abs(torch_maps.probability - ort_maps.probability).max() < 1e-4
    cut = None if labels is not None else 0.5
    agree = np.mean(torch_maps.classes(cut) == ort_maps.classes(cut))
    assert agree >= 0.999
