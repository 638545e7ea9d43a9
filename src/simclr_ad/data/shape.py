"""The input shape of a category, chosen from its training images.

A detector compares patches at a fixed grid, so every image of a category is resized to one
(height, width). Square images, and nearly square ones, go to ``image_size``×``image_size``.
Elongated ones (KolektorSDD's commutators are about 500×1250) keep their aspect ratio: the shorter
side becomes ``image_size`` and the longer one follows, so a thin crack along the long side is
not squashed 2.5 times before the encoder sees it.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence

from PIL import Image

from simclr_ad.data.mvtec import Sample

log = logging.getLogger(__name__)

SQUARE_WITHIN = 1.25  # aspect ratios in [1/1.25, 1.25] count as square
MAX_ASPECT = 4.0  # longer runs are capped (the long side at 4x the short one)
MULTIPLE = 32  # sides are multiples of the backbone's largest stride
SAMPLED = 64  # image headers read to measure the aspect ratio


def image_aspect(samples: Sequence[Sample]) -> float | None:
    """Median height / width of up to SAMPLED images, from their headers; None if none reads."""
    step = max(1, len(samples) // SAMPLED)
    ratios = []
    for sample in list(samples)[::step][:SAMPLED]:
        try:
            with Image.open(sample.path) as image:
                width, height = image.size
        except Exception:  # an unreadable file is reported when the pixels are decoded
            continue
        if width > 0 and height > 0:
            ratios.append(height / width)
    return statistics.median(ratios) if ratios else None


def choose_shape(samples: Sequence[Sample], image_size: int, aspect: str) -> tuple[int, int]:
    """(height, width) for the images of one category.

    Args:
        samples: the category's good training images.
        image_size: the side of square images, the shorter side of elongated ones.
        aspect: ``"auto"`` (keep an elongated category's aspect ratio) or ``"square"``.
    """
    ratio = image_aspect(samples) if aspect == "auto" else None
    if ratio is None or 1 / SQUARE_WITHIN <= ratio <= SQUARE_WITHIN:
        return image_size, image_size
    ratio = min(max(ratio, 1 / MAX_ASPECT), MAX_ASPECT)
    multiples = math.floor(image_size * max(ratio, 1 / ratio) / MULTIPLE + 0.5)  # half up
    longer = max(MULTIPLE, multiples * MULTIPLE)
    shape = (longer, image_size) if ratio > 1 else (image_size, longer)
    log.info("images %.2f times as high as wide: resized to %d×%d (H×W)", ratio, *shape)
    return shape
