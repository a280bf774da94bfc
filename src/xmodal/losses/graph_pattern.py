"""Graph pattern loss (GPLDAN, Chen et al., section 2.2), inside one mini-batch.

Inputs are ``[B, B]`` distance matrices between the batch's representations: ``vt[i, j] =
l_p(v_i, t_j)`` (co-attention, image i against text j), ``vv`` and ``tt`` (self-attention within
a modality), and ``unpaired [B, B]``, True where i and j are different objects. Row i of a batch
is a matching pair (image i, text i), so the diagonal of ``vt`` holds the paired distances.

Eq. 6 as printed, ``1/n sum_j (l_p(x_i, y_j) - d)``, is a signed difference: its gradient does not
depend on the target d at all, and a minimiser simply drives every unpaired distance to its lower
bound (all representations collapse together), the opposite of what the text says eq. 6 is for
("limit them to be consistent with the distances ... in their original media spaces"). We take
the absolute difference ``|l_p - d|`` by default (the form eq. 8 uses), or the squared one;
``form="signed"`` keeps the printed eq. 6 for comparison only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

UdpForm = Literal["abs", "squared", "signed"]


def cosine_distance_matrix(x: Tensor, y: Tensor) -> Tensor:
    """Eq. 5 for all pairs: ``[n, d], [m, d] -> [n, m]``, ``1 - cos(x_i, y_j)``."""
    return 1 - nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(y, dim=-1).T


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def original_distance_target(images: Tensor, texts: Tensor, unpaired: Tensor) -> Tensor:
    """Eq. 6's target ``d = d_ori / d_mean`` for every pair of a batch, ``[B, B]``.

    ``d_ori(i, j) = sqrt(d_cos(u_i, u_j) d_cos(c_i, c_j))`` on the input image and text features,
    ``d_mean`` its mean over the unpaired pairs of the batch: two objects should be far apart in
    the common space unless they are close in *both* original spaces.
    """
    product = cosine_distance_matrix(images, images) * cosine_distance_matrix(texts, texts)
    original = product.clamp_min(0).sqrt()
    return original / masked_mean(original, unpaired).clamp_min(1e-8)


def pairwise_distance_loss(vt: Tensor) -> Tensor:
    """Eq. 4, L_pdl: mean distance of the matching pairs (the diagonal of ``vt``)."""
    return vt.diagonal().mean()


def unpaired_distance_loss(distances: Tensor, target: Tensor, unpaired: Tensor, form: UdpForm = "abs") -> Tensor:
    """Eq. 6, l_unp, averaged over the unpaired pairs: how far their distances are from ``target``."""
    difference = distances - target
    if form == "abs":
        difference = difference.abs()
    elif form == "squared":
        difference = difference.square()
    elif form != "signed":
        raise ValueError(f"unknown unpaired distance form {form!r}: abs, squared or signed")
    return masked_mean(difference, unpaired)


def unpaired_distance_preserving_loss(vt: Tensor, vv: Tensor, tt: Tensor, target: Tensor, unpaired: Tensor,
                                      form: UdpForm = "abs") -> Tensor:
    """Eq. 7, L_udp = l_unp(v, T) + l_unp(v, V) + l_unp(t, T), all against the same targets."""
    return sum(unpaired_distance_loss(d, target, unpaired, form) for d in (vt, vv, tt))


def mutual_distance_preserving_loss(vt: Tensor, vv: Tensor, tt: Tensor, unpaired: Tensor) -> Tensor:
    """Eq. 8, L_mdp: the three unpaired distances of the same two objects should agree."""
    disagreement = (vt - vv).abs() + (vt - tt).abs() + (vv - tt).abs()
    return masked_mean(disagreement, unpaired)


def graph_pattern_loss(vt: Tensor, vv: Tensor, tt: Tensor, target: Tensor, unpaired: Tensor, *,
                       alpha: float, beta: float, form: UdpForm = "abs") -> dict[str, Tensor]:
    """Eq. 9, L_gpl = L_pdl + alpha L_udp + beta L_mdp; a weight of 0 skips its term.

    Returns ``{"gpl", "pdl", "udp", "mdp"}`` (a skipped term is reported as 0).
    """
    zero = vt.new_zeros(())
    pdl = pairwise_distance_loss(vt)
    udp = unpaired_distance_preserving_loss(vt, vv, tt, target, unpaired, form) if alpha else zero
    mdp = mutual_distance_preserving_loss(vt, vv, tt, unpaired) if beta else zero
    return {"gpl": pdl + alpha * udp + beta * mdp, "pdl": pdl, "udp": udp, "mdp": mdp}
