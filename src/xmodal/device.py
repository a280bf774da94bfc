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


def available_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the host's ``MemAvailable``
    (Linux); None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
