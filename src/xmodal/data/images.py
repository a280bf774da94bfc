"""Loading images with Pillow: RGB, transparency composited on white, clear errors."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from xmodal.errors import DataError, OversizedImageError

# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 megapixels) as possible
# decompression bombs. xmodal applies its own limit, an option (--max-image-pixels), and says so.
DEFAULT_MAX_PIXELS = 180_000_000
# Reduce-on-load keeps at least this many times the target size before the final bicubic resize.
_KEEP_FACTOR = 2


def load_rgb(path: Path, size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``path`` as an RGB image, compositing any alpha channel on white.

    With ``size`` the image is resized to ``size x size`` (bicubic), which is what the
    encoders feed the network. Large images are shrunk while they are decoded: JPEGs decode at
    a reduced DCT scale (``draft``), others are reduced by an integer factor right after decoding,
    both keeping at least twice ``size`` before the final resize, so a 168-megapixel drawing does
    not hold gigabytes of full-size copies. An image over ``max_pixels`` (0: no limit) is refused.
    Missing, truncated, unreadable or too large files raise :class:`DataError`.
    """
    if not path.is_file():
        raise DataError(path, "image file not found", "check the path, or pass --skip-bad to skip it")
    try:
        with _pillow_pixel_limit(max_pixels), Image.open(path) as image:
            _check_pixels(path, image.width * image.height, max_pixels)
            if size is not None:
                image.draft("RGB", (size * _KEEP_FACTOR, size * _KEEP_FACTOR))
            image.load()
            rgb = to_rgb(_reduce(image, size) if size is not None else image)
    except Image.DecompressionBombError:
        with _pillow_pixel_limit(0), Image.open(path) as header:  # Pillow refused it before xmodal's check
            _check_pixels(path, header.width * header.height, max_pixels)
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(
            path, f"unreadable or truncated image ({error})", "replace the file, or pass --skip-bad to skip it"
        ) from None
    if size is not None:
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return rgb


def _check_pixels(path: Path, pixels: int, max_pixels: int) -> None:
    if max_pixels and pixels > max_pixels:
        raise OversizedImageError(path, f"{pixels / 1e6:.3g}-megapixel image, over the limit of "
                                  f"{max_pixels / 1e6:.3g} megapixels", "raise the limit with --max-image-pixels N "
                                  "(or 0 for none) if you trust the file, shrink it, or pass --skip-bad to skip it")


@contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open what xmodal's own limit allows (its bomb check reads a module global)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _reduce(image: Image.Image, size: int) -> Image.Image:
    """Shrink by the largest integer factor that keeps the short side >= ``_KEEP_FACTOR * size``."""
    factor = min(image.size) // (size * _KEEP_FACTOR)
    if factor < 2:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info or "A" in image.mode else "RGB")
    return image.reduce(factor)


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
