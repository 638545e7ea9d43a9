"""The one colour scale of anomaly maps, and overlays drawn with it.

``predict --heatmaps``, the service's overlays and the report's gallery all colour a map the same
way: relative to the category's threshold, so overlays of different images, commands and
categories compare. A map at or below ``LOW`` × threshold is the colour map's low end (dark
blue), the threshold itself sits in the middle, and ``HIGH`` × threshold and above is its high
end (dark red). ``colour_stops`` gives the same scale for a colour bar.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

COLOUR_MAP = "turbo"  # blue (far below the threshold) through green/yellow to red (above it)
LOW, HIGH = 0.5, 1.5  # map / threshold shown from the low end (<= LOW) to the high end (>= HIGH)
OPACITY = 0.5  # share of the colour in an overlay; the rest is the image


def relative_level(anomaly_map: NDArray[np.floating], threshold: float) -> NDArray[np.float64]:
    """Position on the colour scale, in [0, 1], of each map value (same shape as the map).

    Args:
        anomaly_map: map in score units.
        threshold: the category's threshold (> 0).
    """
    ratio = np.asarray(anomaly_map, dtype=np.float64) / threshold
    return np.clip((ratio - LOW) / (HIGH - LOW), 0.0, 1.0)


def _colours(level: NDArray[np.float64]) -> NDArray[np.float64]:
    """RGB in [0, 255], shape ``level.shape + (3,)``."""
    from matplotlib import colormaps  # heavy: imported when a colour is needed

    return np.asarray(colormaps[COLOUR_MAP](level)[..., :3], dtype=np.float64) * 255.0


def overlay(rgb: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> Image.Image:
    """The image with its anomaly map blended over it on the shared scale.

    Args:
        rgb: uint8 H×W×3 image, as the detector saw it.
        anomaly_map: H×W map in score units.
        threshold: the category's threshold (> 0).
    """
    colours = _colours(relative_level(anomaly_map, threshold))  # H×W×3
    blended = (1 - OPACITY) * rgb.astype(np.float64) + OPACITY * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def colour_stops(n: int = 11) -> list[tuple[float, str]]:
    """``n`` evenly spaced points of the scale as (map / threshold, ``#rrggbb``), low to high:
    what a colour bar next to overlays draws."""
    levels = np.linspace(0.0, 1.0, n)
    rgb = np.clip(_colours(levels) + 0.5, 0, 255).astype(np.uint8)
    return [
        (float(LOW + level * (HIGH - LOW)), "#{:02x}{:02x}{:02x}".format(*colour))
        for level, colour in zip(levels, rgb, strict=True)
    ]


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
