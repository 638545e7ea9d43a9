"""Decoding image and mask files into 8-bit RGB arrays, whatever their mode."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# The largest width × height decoded (train, evaluate, predict, and the service's uploads): an
# 81-megapixel PNG is 243 MB of RGB; a batch of them would exhaust memory.
MAX_PIXELS = 40_000_000


class UnreadableImageError(Exception):
    """A file that cannot be decoded as an image; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def display_path(path: Path) -> str:
    """``path`` as printable UTF-8 text: bytes of a file name that are not UTF-8 become ``\\xNN``.

    Python keeps such bytes as lone surrogates, which cannot be written to a UTF-8 file.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, 16-bit, palette, RGBA and CMYK images -> 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


Size = int | tuple[int, int]  # a square side S, or (height, width)


def _width_height(size: Size) -> tuple[int, int]:
    """PIL's (width, height) of a side S or an (H, W) pair."""
    return (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))


def read_rgb(path: Path, size: Size | None = None, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file into an 8-bit RGB array, optionally resized to ``size`` (a side S
    or (H, W)); images of more than ``max_pixels`` (width × height, read from the header) are
    refused before their pixels are decoded.

    EXIF orientation is applied. Resizing uses bicubic interpolation with antialiasing, after
    an integer box-filter reduction when shrinking 2x or more.

    Returns:
        uint8 array of shape H×W×3.

    Raises:
        UnreadableImageError: the file is missing, empty, truncated or not an image.
    """

    def check(image: Image.Image) -> None:
        width, height = image.size
        if width * height > max_pixels:
            raise UnreadableImageError(
                path, f"{width}×{height} pixels, more than the limit of {max_pixels}"
            )

    try:
        return decode_rgb(path, size, check=check)
    except UnreadableImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnreadableImageError(path, "too many pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(path, "not a readable image") from None
    except Exception as exc:  # PIL raises many types on damaged or hostile files
        raise UnreadableImageError(path, f"cannot decode ({_reason(exc)})") from None


def decode_rgb(
    source: Path | IO[bytes],
    size: Size | None = None,
    *,
    check: Callable[[Image.Image], None] | None = None,
) -> np.ndarray:
    """The decoding shared by files (``read_rgb``) and uploads (the service): H×W×3 uint8 RGB.

    EXIF orientation is applied and a decompression bomb raises PIL's DecompressionBomb
    warning as an error; ``check`` sees the opened image before its pixels are decoded. Other
    PIL errors propagate for the caller to report in its own terms.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as opened:  # reads the header only
            if check is not None:
                check(opened)
            image = ImageOps.exif_transpose(opened)
            image.load()
    image = to_rgb(image)
    if size is not None and image.size != _width_height(size):
        # reducing_gap: a box-filter reduction by an integer factor first when shrinking 2x
        # or more (1024 -> 224 px: 9.3 -> 2.4 ms; pixels within 0.3 grey levels on average)
        image = image.resize(_width_height(size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8)


def _reason(exc: Exception) -> str:
    """A decoder error as one short line."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return text or type(exc).__name__


def read_mask(path: Path | None, size: Size) -> np.ndarray:
    """Read a ground-truth mask as a binary H×W array (``size``: S or (H, W)); ``None`` means an
    all-good image.

    Any non-zero pixel counts as defective; resizing uses nearest neighbour so it stays binary.

    Returns:
        bool array of shape H×W.
    """
    width, height = _width_height(size)
    if path is None:
        return np.zeros((height, width), dtype=bool)
    try:
        with Image.open(path) as opened:
            mask = opened.convert("L")
    except Exception as exc:  # as in read_rgb: damaged files raise many types
        raise UnreadableImageError(path, f"cannot decode mask ({_reason(exc)})") from None
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(mask) > 0
