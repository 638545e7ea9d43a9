"""Scoring: a category's test images (and the good images that set its thresholds) → scores and
anomaly maps. Nothing here measures or writes anything."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from simclr_ad.config import held_out_fraction
from simclr_ad.data.images import UnreadableImageError, read_mask
from simclr_ad.data.mvtec import CategorySplit, Sample, load_category
from simclr_ad.data.store import decode_images
from simclr_ad.detector import Detection
from simclr_ad.detector_bundle import LoadedDetector
from simclr_ad.errors import UserError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImageCounts:
    """How many images of each kind a category's evaluation rests on."""

    train_good: int
    val_good: int
    test_good: int
    test_defect: int
    test_unreadable: int


@dataclasses.dataclass(frozen=True)
class CategoryScores:
    """The test images of one category that decoded, their masks and the detection."""

    category: str
    samples: tuple[Sample, ...]
    masks: np.ndarray  # N×H×W bool
    detection: Detection
    counts: ImageCounts
    seconds: float  # scoring the test images, decoding excluded
    pixels: torch.Tensor  # uint8 N×3×H×W, for the report's thumbnails
    train: tuple[Sample, ...]  # the good training images the detector was fitted on
    val_scores: dict[str, torch.Tensor] | None = None  # good images that set the thresholds
    val_samples: tuple[Sample, ...] = ()  # their images, in val_scores' order

    @property
    def labels(self) -> np.ndarray:
        """1 for a defective test image, 0 for a good one (N,)."""
        return np.array([s.label for s in self.samples])


def score_categories(
    loaded: LoadedDetector, root: Path, categories: Sequence[str], device: torch.device
) -> tuple[CategoryScores, ...]:
    """Score ``categories`` (all the detector's categories that have test images if empty)."""
    chosen = categories or categories_with_test_images(root, loaded.detector.categories)
    return tuple(score_category(loaded, root, c, device) for c in chosen)


def score_category(
    loaded: LoadedDetector, root: Path, category: str, device: torch.device
) -> CategoryScores:
    """Decode and score one category's test images."""
    config = loaded.metadata["training"]["config"]
    size = loaded.detector.input_shape(category)
    split = load_category(
        root, category, val_fraction=held_out_fraction(config), val_min=config["val_min"]
    )
    if not split.test:
        raise UserError(f"category {category} has no test images under {root / category / 'test'}")
    decoded = decode_images(split.test, size)
    missing = [s.path.name for s in decoded.samples if s.label == 1 and s.mask_path is None]
    if missing:
        log.warning(
            "%s: %d defective images have no mask (e.g. %s)", category, len(missing), missing[0]
        )
    masks = np.stack([_read_mask(s.mask_path, size) for s in decoded.samples])
    started = time.perf_counter()
    detection = loaded.detector.detect(
        decoded.pixels, category, device=device, maps=True, progress=f"{category}: scoring"
    )
    seconds = time.perf_counter() - started
    val_scores, val_samples = _good_scores(loaded, root, split, device)
    counts = ImageCounts(
        train_good=len(split.train),
        val_good=len(split.val),
        test_good=sum(s.label == 0 for s in decoded.samples),
        test_defect=sum(s.label == 1 for s in decoded.samples),
        test_unreadable=len(decoded.skipped),
    )
    return CategoryScores(
        category=category,
        samples=decoded.samples,
        masks=masks,
        detection=detection,
        counts=counts,
        seconds=seconds,
        pixels=decoded.pixels,
        train=split.train,
        val_scores=val_scores,
        val_samples=val_samples,
    )


def _good_scores(
    loaded: LoadedDetector, root: Path, split: CategorySplit, device: torch.device
) -> tuple[dict[str, torch.Tensor] | None, tuple[Sample, ...]]:
    """The good training scores that set the thresholds, with their images: the held-out split
    scored now where there is one, else the cross-fitted scores stored in the bundle (None for
    neither). They are the control free of any shift between training and test good parts."""
    category = split.category
    if split.val:
        val = decode_images(split.val, loaded.detector.input_shape(category))
        if val.samples:
            detected = loaded.detector.detect(
                val.pixels,
                category,
                device=device,
                maps=False,
                progress=f"{category}: scoring held-out good",
            )
            return detected.scores, val.samples
    files = loaded.metadata["training"].get("calibration_files", {}).get(category)
    scores = loaded.detector.scorer_set(category).good_scores
    if not files or not scores:
        return None, ()
    return dict(scores), tuple(Sample(root / name, category, "good", 0) for name in files)


def _read_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask; an unreadable one refuses the evaluation (pixel metrics need it)."""
    try:
        return read_mask(path, size)
    except UnreadableImageError as exc:
        raise UserError(f"ground-truth mask {exc}; fix or remove it") from None


def categories_with_test_images(root: Path, categories: Sequence[str]) -> list[str]:
    """The categories that have test images; the others are skipped with a warning."""
    found = [c for c in categories if any((root / c / "test").glob("*/*"))]
    for category in sorted(set(categories) - set(found)):
        log.warning("skipping category %s: no test images under %s", category, root / category)
    if not found:
        raise UserError(f"no test images under {root}: expected ROOT/<category>/test/<type>/")
    return found
