"""Object features without a detector: P = 10 fixed boxes per image, each crop through EfficientNet-Lite0.

BSSAN (and SCAN-style models) read the top-10 proposals of a Faster R-CNN detector, each a 2048-d
RoI feature. No detector weights ship in any package here, so ``objects`` stands in with ten
proxies that cover an image at three scales, the way proposals of different sizes would: the
whole image, the four overlapping quadrants (60% of each side), the centre (60%) and the four
halves (top, bottom, left, right). Each crop is cut from the image decoded at 2 x 160 px and
encoded at 160 px (one grid cell per 32 px), and its pooled 1280-d vector is the object feature.
The boxes are the same for every image, so "object" i always means the same part of the frame;
datasets that ship real object features (``precomputed`` / ``scan-precomputed`` arrays of shape
``[n, P, d]``) are read as they are.
"""

from __future__ import annotations

import torch
from PIL import Image

from xmodal.encoders import image as effnet

# (left, top, right, bottom) as fractions of the width and height.
BOXES: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),  # the whole image
    (0.0, 0.0, 0.6, 0.6), (0.4, 0.0, 1.0, 0.6), (0.0, 0.4, 0.6, 1.0), (0.4, 0.4, 1.0, 1.0),  # quadrants
    (0.2, 0.2, 0.8, 0.8),  # the centre
    (0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0), (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0),  # halves
)
CROP_RESOLUTION = 160  # a multiple of 32: a 5 x 5 grid per crop, about half the cost of 224 px


def crops(image: Image.Image, size: int = CROP_RESOLUTION) -> list[Image.Image]:
    """The :data:`BOXES` of ``image``, each resized to ``size x size`` (bicubic)."""
    width, height = image.size
    return [image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))
            .resize((size, size), Image.Resampling.BICUBIC) for left, top, right, bottom in BOXES]


class ObjectProxies:
    """Images -> ``[B, P, 1280]``: the pooled EfficientNet-Lite0 vector of each box's crop."""

    count = len(BOXES)

    def __init__(self, device: str | torch.device = "cpu"):
        self.encoder = effnet.EfficientNetLite0(CROP_RESOLUTION, device)

    def encode(self, images: list[Image.Image], crops_per_pass: int = 64) -> torch.Tensor:
        """``[B, P, 1280]``; crops go through the network ``crops_per_pass`` at a time (bounded memory)."""
        pieces = [crop for image in images for crop in crops(image)]
        pooled = torch.cat([self.encoder.encode(pieces[start : start + crops_per_pass]).pooled
                            for start in range(0, len(pieces), crops_per_pass)])  # [B * P, 1280]
        return pooled.view(len(images), self.count, -1)
