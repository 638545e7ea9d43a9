"""Anomaly-map overlays: the map, coloured relative to the threshold, blended over the image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

LOW, HIGH = 0.5, 1.5  # map / threshold shown from blue (<= LOW) to red (>= HIGH)


def overlay(rgb: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> Image.Image:
    """The image with its anomaly map blended over it (jet colours, half opacity).

    Colours are relative to the threshold so overlays of different images compare: blue at or
    below half the threshold, red at 1.5 times it and above.

    Args:
        rgb: uint8 S×S×3 image, as the detector saw it.
        anomaly_map: S×S map in score units.
        threshold: the category's threshold (> 0).
    """
    from matplotlib import colormaps  # heavy: imported when an overlay is made

    level = np.clip((anomaly_map / threshold - LOW) / (HIGH - LOW), 0.0, 1.0)
    colours = colormaps["jet"](level)[..., :3] * 255.0  # S×S×3
    blended = 0.5 * rgb.astype(np.float64) + 0.5 * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
