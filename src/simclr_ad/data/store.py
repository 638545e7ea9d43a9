"""Decode each image once per run and keep the resized uint8 pixels in memory (or memory-mapped).

Training then slices this tensor every step instead of decoding PNGs per sample per epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from simclr_ad.data.images import Size, UnreadableImageError, read_rgb
from simclr_ad.data.mvtec import Sample
from simclr_ad.errors import UserError

log = logging.getLogger(__name__)

MEMMAP_THRESHOLD_BYTES = 2 * 1024**3  # above this, pixels live in a memory-mapped file


@dataclasses.dataclass(frozen=True)
class DecodedImages:
    """Decoded pixels with the samples they came from.

    Attributes:
        pixels: uint8 tensor N×3×H×W (may be backed by a memory-mapped file).
        samples: the N samples that decoded, in order.
        skipped: the samples that could not be read, with the reason.
    """

    pixels: torch.Tensor
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Sample, str], ...]

    def subset(self, wanted: Sequence[Sample]) -> DecodedImages:
        """The rows (and skipped entries) of ``wanted``, in this object's order."""
        keep = set(wanted)
        rows = [i for i, s in enumerate(self.samples) if s in keep]
        return DecodedImages(
            self.pixels[rows],
            tuple(self.samples[i] for i in rows),
            tuple((s, e) for s, e in self.skipped if s in keep),
        )


def _allocate(n: int, size: Size, cache_dir: Path | None) -> np.ndarray:
    height, width = (size, size) if isinstance(size, int) else size
    shape = (n, height, width, 3)
    if n * height * width * 3 <= MEMMAP_THRESHOLD_BYTES:
        return np.empty(shape, dtype=np.uint8)
    folder = Path(tempfile.mkdtemp(prefix="pixels-", dir=cache_dir))
    log.info("memory-mapping %d images of %d×%d px in %s", n, height, width, folder)
    return np.lib.format.open_memmap(folder / "pixels.npy", mode="w+", dtype=np.uint8, shape=shape)


def decode_images(
    samples: Sequence[Sample],
    size: Size,
    *,
    max_bad_fraction: float = 0.05,
    workers: int = 2,
    cache_dir: Path | None = None,
) -> DecodedImages:
    """Decode and resize ``samples`` once, skipping unreadable files with a warning.

    Args:
        samples: the files to decode.
        size: output side length in pixels, or (height, width).
        max_bad_fraction: refuse (UserError) when more than this share of a category is unreadable.
        workers: decoding threads (PIL releases the GIL while decoding).
        cache_dir: where a memory-mapped pixel file goes for large sets (default: system temp).
    """
    out = _allocate(len(samples), size, cache_dir)

    def decode(index: int) -> str | None:
        try:
            out[index] = read_rgb(samples[index].path, size)
        except UnreadableImageError as exc:
            return exc.reason
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        errors = list(pool.map(decode, range(len(samples))))
    skipped = tuple((s, e) for s, e in zip(samples, errors, strict=True) if e is not None)
    _check_unreadable(samples, skipped, max_bad_fraction)
    keep = [i for i, e in enumerate(errors) if e is None]
    pixels = out if len(keep) == len(samples) else out[keep]
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # N×3×H×W view, no copy
    return DecodedImages(tensor, tuple(samples[i] for i in keep), skipped)


def _check_unreadable(
    samples: Sequence[Sample], skipped: Sequence[tuple[Sample, str]], max_bad_fraction: float
) -> None:
    for sample, reason in skipped:
        log.warning("skipping unreadable image %s: %s", sample.path, reason)
    by_category: dict[str, list[int]] = {}
    for s in samples:
        by_category.setdefault(s.category, [0, 0])[0] += 1
    for s, _ in skipped:
        by_category[s.category][1] += 1
    for category, (total, bad) in by_category.items():
        if bad:
            log.warning("category %s: skipped %d of %d unreadable images", category, bad, total)
        if bad > max_bad_fraction * total:
            first = next(s.path for s, _ in skipped if s.category == category)
            raise UserError(
                f"category {category}: {bad} of {total} images are unreadable "
                f"(more than {max_bad_fraction:.0%}), e.g. {first}"
            )
