"""Where and in which arithmetic networks run: device choice, bf16 autocast, the convolution memory layout."""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.cache
def native_bf16(device: torch.device) -> bool:
    """Whether this device computes bf16 in hardware: a CUDA GPU from Ampere on, or a CPU with AVX-512 BF16 or AMX
    instructions. Elsewhere bf16 is emulated (oneDNN on a plain AVX-512 CPU converts; on an AVX2-only CPU torch
    falls back to reference convolutions, 10x fp32's time for a training step, benchmarks/precision.md), so
    `auto` runs fp32 there."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def effective_precision(precision: str, device: torch.device) -> str:
    """`auto` resolved for this device; `fp32` and `bf16` as written."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def effective_backend(backend: str, precision: str, device: torch.device) -> str:
    """`auto` resolved: ONNX Runtime where the network would run fp32 on a CPU (no bf16 instructions: ~1.5x
    torch there), torch where bf16 runs natively or on a GPU; `torch` and `onnxruntime` as written."""
    if backend != "auto":
        return backend
    fp32_cpu = device.type == "cpu" and effective_precision(precision, device) == "fp32"
    return "onnxruntime" if fp32_cpu else "torch"


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast (on the CPU through oneDNN: AVX-512 BF16 / AMX where present), or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=effective_precision(precision, device) == "bf16")


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def memory_format(net: nn.Module) -> torch.memory_format:
    kernel = next(p for p in net.parameters() if p.ndim == 4)
    channels_last = kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format
