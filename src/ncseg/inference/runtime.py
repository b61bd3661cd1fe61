"""Where and in which arithmetic networks run: device choice, bf16 autocast, the convolution memory layout."""

from __future__ import annotations

import torch
from torch import nn


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast (on the CPU through oneDNN: AVX-512 BF16 / AMX where present), or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def memory_format(net: nn.Module) -> torch.memory_format:
    kernel = next(p for p in net.parameters() if p.ndim == 4)
    channels_last = kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format
