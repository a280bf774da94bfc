"""Loading images with Pillow: RGB, transparency composited on white, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from xmodal.errors import DataError


def load_rgb(path: Path, size: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB image, compositing any alpha channel on white.

    With ``size`` the image is resized to ``size x size`` (bicubic), which is what the
    encoders feed the network. Missing, truncated or unreadable files raise :class:`DataError`.
    """
    if not path.is_file():
        raise DataError(path, "image file not found", "check the path, or pass --skip-bad to skip it")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(
            path, f"unreadable or truncated image ({error})", "replace the file, or pass --skip-bad to skip it"
        ) from None
    if size is not None:
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (as the encoders expect)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_array(image: Image.Image) -> np.ndarray:
    """HWC uint8 array."""
    return np.asarray(image, dtype=np.uint8)
