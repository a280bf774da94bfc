"""A softmax temperature on attention logits, fixed or learned (an option beside the printed equations).

ACLN's eq. 7 bounds each logit with tanh and JGCAR's eq. 13 has no scale, so their attention over
49-196 regions can hardly leave uniform (issue 29). Dividing the logits by a temperature before
the softmax widens their range without the bound; learned, it is ``exp(log_tau)`` so it stays
positive, started at the given value. ``temperature=1`` and not learned is the paper's form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Temperature(nn.Module):
    def __init__(self, initial: float = 1.0, learn: bool = False):
        super().__init__()
        if initial <= 0:
            raise ValueError(f"a temperature must be positive, got {initial}")
        log_tau = torch.tensor(math.log(initial))
        if learn:
            self.log_tau = nn.Parameter(log_tau)
        else:  # not saved: a fixed temperature comes from the config, and runs saved before it existed still load
            self.register_buffer("log_tau", log_tau, persistent=False)

    def inverse(self) -> Tensor:
        """``1 / tau``: what the logits are multiplied by."""
        return torch.exp(-self.log_tau)
