"""Choosing the torch device: ``auto`` takes the GPU when there is one."""

from __future__ import annotations

import torch

from xmodal.errors import XmodalError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XmodalError(f"device {name!r} was asked for but no CUDA GPU is available here; ask for cpu or auto "
                          "instead (train.device in the config or --set train.device=auto; --device for "
                          "extract and eval)")
    return device
