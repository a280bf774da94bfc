"""Checkpoints written atomically and read back without unpickling arbitrary code.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: a checkpoint from a stranger cannot run code on load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from xmodal.errors import XmodalError
from xmodal.paths import atomic_write_bytes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise XmodalError(f"checkpoint {path} not found; train first (xmodal train --config C --out RUN)")
    if path.stat().st_size == 0:
        raise XmodalError(f"{path}: empty file (0 bytes), not a checkpoint (a full disk or a cut-short copy?); "
                          "train again, or use the run's other checkpoint (--checkpoint best|last)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests loading with weights_only=False, which would run any code the
        # file holds: never do that with a checkpoint you did not write yourself.
        raise XmodalError(f"{path}: holds objects other than tensors and plain values, so it is not an xmodal "
                          "checkpoint; xmodal does not unpickle arbitrary objects (they could run code)") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise XmodalError(f"{path}: not a readable xmodal checkpoint ({type(error).__name__}"
                          f"{': ' + reason if reason else ''}); delete it and train again") from None
    missing = {"model", "config", "epoch"} - set(state) if isinstance(state, dict) else {"model"}
    if missing:
        raise XmodalError(f"{path}: not an xmodal checkpoint (missing {', '.join(sorted(missing))})")
    return state
