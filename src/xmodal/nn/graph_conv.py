"""Chebyshev graph convolution (Defferrard, Bresson, Vandergheynst, NIPS 2016), as SCANet's text model uses it.

SCANet (Lu et al., section 3.1, eq. 1): every text is a signal on one shared word graph (a count
per vertex), filtered by

    f_out = sum_{k=0}^{K-1} theta_k T_k(L~) f_in,   T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2}   (eq. 1)

with ``L~ = 2 L / lambda_max - I`` the rescaled normalised Laplacian. One input and one output
feature per vertex, so a layer has K scalar parameters ("only 3 parameters" for K = 3). The
recursion runs on the whole batch at once as sparse x dense products (``L~`` stays sparse:
a 10,000-vertex graph is never densified, per text or otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rescaled_laplacian(laplacian: Tensor, lambda_max: float) -> Tensor:
    """``2 L / lambda_max - I`` as a coalesced sparse COO tensor (eq. 1), from a sparse ``L``."""
    n = laplacian.shape[0]
    eye = torch.sparse_coo_tensor(torch.arange(n).repeat(2, 1), torch.ones(n, dtype=laplacian.dtype), (n, n),
                                  check_invariants=True)
    return (laplacian.coalesce() * (2.0 / lambda_max) - eye).coalesce()


def chebyshev_terms(laplacian: Tensor, signals: Tensor, order: int) -> list[Tensor]:
    """``[T_0(L~) x, ..., T_{K-1}(L~) x]`` for a batch of signals ``x [B, V]``, each ``[B, V]``.

    ``laplacian`` is the (sparse) rescaled Laplacian ``L~``; products are sparse x dense.
    """
    columns = signals.T  # [V, B]: one sparse product filters the whole batch
    terms = [columns]
    if order > 1:
        terms.append(torch.sparse.mm(laplacian, columns))
    for _ in range(2, order):
        terms.append(2 * torch.sparse.mm(laplacian, terms[-1]) - terms[-2])
    return [term.T for term in terms]


class ChebyshevConv(nn.Module):
    """One layer of eq. 1 with one scalar filter per Chebyshev order: ``[B, V] -> [B, V]``.

    The filters start as the identity (theta = (1, 0, ..., 0)), so an untrained layer passes the
    counts through and training decides how far along the graph to spread them.
    """

    def __init__(self, order: int = 3):
        super().__init__()
        if order < 1:
            raise ValueError(f"Chebyshev order K must be at least 1, got {order}")
        self.order = order
        self.theta = nn.Parameter(torch.zeros(order))
        with torch.no_grad():
            self.theta[0] = 1.0

    def forward(self, signals: Tensor, laplacian: Tensor) -> Tensor:
        terms = chebyshev_terms(laplacian, signals, self.order)
        return sum(theta * term for theta, term in zip(self.theta, terms))


class GraphTextModel(nn.Module):
    """SCANet's H_T (eq. 2) up to the common-space layer: ``layers`` Chebyshev convolutions, each + ReLU.

    Holds the rescaled Laplacian as a sparse, non-persistent buffer (it comes from the data, not
    from training, and moves with the module between devices).
    """

    def __init__(self, laplacian: Tensor, lambda_max: float, layers: int = 2, order: int = 3):
        super().__init__()
        self.register_buffer("laplacian", rescaled_laplacian(laplacian.float(), lambda_max), persistent=False)
        self.convs = nn.ModuleList(ChebyshevConv(order) for _ in range(layers))

    def forward(self, signals: Tensor) -> Tensor:
        for conv in self.convs:
            signals = torch.relu(conv(signals, self.laplacian))
        return signals
