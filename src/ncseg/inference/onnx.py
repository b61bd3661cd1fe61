"""The served networks run by ONNX Runtime instead of torch, where that is faster.

On a CPU without bf16 instructions torch runs these U-Nets in fp32 at ~44 % of the CPU's matrix-product rate;
ONNX Runtime's fused convolutions reach ~68 % (benchmarks/onnx_backend.md: 2048² in 3.7 s vs 5.7 s on an AVX2
EPYC). Where the CPU computes bf16 (AMX, AVX-512 BF16) torch's bf16 path is faster still, so `inference.backend:
auto` picks per machine (ncseg.inference.runtime.effective_backend). Each network is exported once, when the
model loads, to an in-memory ONNX graph with free batch, height and width; a tile goes in and logits come out,
exactly where the torch module's would, so tiling, test-time augmentation and calibration are unchanged.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from ncseg.inference.runtime import effective_backend


class OnnxNet(nn.Module):
    """A network as an ONNX Runtime session, called like the module it was exported from (NCHW tiles in, logits
    out). It keeps what tiling asks of a network: `outputs`, `geometry`, and a parameter that places tiles on the
    CPU in the plain layout ONNX Runtime reads."""

    def __init__(self, net: nn.Module) -> None:
        import onnxruntime

        super().__init__()
        self.outputs, self.geometry = net.outputs, net.geometry
        self.anchor = nn.Parameter(torch.zeros(1, 1, 1, 1), requires_grad=False)
        self.session = onnxruntime.InferenceSession(_exported(net), providers=["CPUExecutionProvider"])

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"tiles": tiles.float().contiguous().numpy()})
        return torch.from_numpy(logits)


def _exported(net: nn.Module) -> bytes:
    """`net` as ONNX (opset 17, the TorchScript-based exporter: the dynamo one needs onnxscript), batch and size
    free."""
    channels = next(p for p in net.parameters() if p.ndim == 4).shape[1]
    side = net.geometry.fit(2 * net.geometry.divisor)
    example = torch.zeros(1, channels, side, side)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # torch 2.14 calls this exporter deprecated, on every load of a served model
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval().float(),
            (example,),
            buffer,
            input_names=["tiles"],
            output_names=["logits"],
            dynamic_axes={"tiles": axes, "logits": axes},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def runners(nets: list[nn.Module], backend: str, precision: str) -> list[nn.Module]:
    """What answers requests: the list `nets` itself, or their ONNX Runtime sessions where `backend` (auto:
    resolved for this CPU and `precision`) says so."""
    if effective_backend(backend, precision, torch.device("cpu")) == "onnxruntime":
        return [OnnxNet(net) for net in nets]
    return nets
