"""Checking and decoding uploaded images: size, pixel count and format limits before decoding."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from simclr_ad.data.images import MAX_PIXELS, Size, decode_rgb

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP"})


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """What the service accepts.

    Attributes:
        max_bytes: largest upload, in bytes.
        max_pixels: largest declared width × height (decompression bombs are refused before
            their pixels are decoded).
        formats: PIL format names accepted.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    formats: frozenset[str] = ALLOWED_FORMATS


class UploadError(Exception):
    """A request the service refuses: an HTTP status (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_upload(data: bytes, size: Size, limits: UploadLimits) -> np.ndarray:
    """Uploaded bytes -> uint8 H×W×3 RGB (``size``: S or (H, W)), as ``read_rgb`` decodes files.

    Raises:
        UploadError: 400 empty, 413 too large (bytes or pixels), 415 not an accepted image
            format, 422 a damaged image.
    """
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise UploadError(413, f"upload larger than {limits.max_bytes} bytes")
    try:
        return decode_rgb(io.BytesIO(data), size, check=lambda image: _check_header(image, limits))
    except UploadError:
        raise
    except UnidentifiedImageError:
        raise UploadError(
            415, f"not an image in an accepted format ({', '.join(sorted(limits.formats))})"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError(413, "image has too many pixels (decompression bomb)") from None
    except Exception as exc:  # any decoder failure on untrusted bytes is the client's problem
        raise UploadError(422, f"not a readable image: {exc}") from None


def _check_header(image: Image.Image, limits: UploadLimits) -> None:
    if image.format not in limits.formats:
        accepted = ", ".join(sorted(limits.formats))
        raise UploadError(415, f"image format {image.format} not accepted; send {accepted}")
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UploadError(
            413, f"image of {width}×{height} pixels exceeds the limit of {limits.max_pixels}"
        )
