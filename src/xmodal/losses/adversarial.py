"""Modality classifier losses (GPLDAN, Chen et al., section 2.3; adversarial in the GAN sense).

A discriminator D maps a common-space feature to the logit of "this is an image". D learns to
tell the modalities apart (eq. 10, label 1 for images, 0 for texts); the projector learns to fool
it with the flipped labels (eq. 11). ``l_cel`` is the binary cross-entropy of the paper, here on
logits for numerical stability.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

IMAGE, TEXT = 1.0, 0.0


def modality_cross_entropy(discriminator: Callable[[Tensor], Tensor], images: Tensor, texts: Tensor,
                           image_label: float, text_label: float) -> Tensor:
    """``l_cel(D(v), y_v) + l_cel(D(t), y_t)``, each averaged over the batch."""
    image_logits, text_logits = discriminator(images).squeeze(-1), discriminator(texts).squeeze(-1)
    bce = nn.functional.binary_cross_entropy_with_logits
    return (bce(image_logits, torch.full_like(image_logits, image_label))
            + bce(text_logits, torch.full_like(text_logits, text_label)))


def discriminator_loss(discriminator: Callable[[Tensor], Tensor], images: Tensor, texts: Tensor) -> Tensor:
    """Eq. 10, L_D: the true modality labels, on *detached* features (it trains D alone)."""
    return modality_cross_entropy(discriminator, images.detach(), texts.detach(), IMAGE, TEXT)


def flipped_modality_loss(discriminator: Callable[[Tensor], Tensor], images: Tensor, texts: Tensor) -> Tensor:
    """Eq. 11's adversarial term: the flipped labels, so the projector makes modalities look alike."""
    return modality_cross_entropy(discriminator, images, texts, TEXT, IMAGE)
