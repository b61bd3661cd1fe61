"""`auto` precision: bf16 only where the device computes it, so a CPU without bf16 kernels is not 10x slower."""

import pytest
import torch

from ncseg.inference import runtime


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_exactly_where_the_device_has_bf16_kernels(monkeypatch, native):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert runtime.effective_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert runtime.autocast("auto", cpu).fast_dtype == torch.bfloat16
    with runtime.autocast("auto", cpu):
        out = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


def test_written_precisions_are_taken_as_written_whatever_the_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    cpu = torch.device("cpu")
    assert runtime.effective_precision("bf16", cpu) == "bf16"
    assert runtime.effective_precision("fp32", cpu) == "fp32"
    with runtime.autocast("bf16", cpu):
        assert torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_a_cpu_computes_bf16_only_with_avx512_bf16_or_amx_instructions(monkeypatch, avx512_bf16, amx, native):
    """A plain AVX-512 or AVX2 CPU only emulates bf16: `auto` must not pick it there."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    runtime.native_bf16.cache_clear()
    try:
        assert runtime.native_bf16(torch.device("cpu")) is native
    finally:
        runtime.native_bf16.cache_clear()
