"""Reading the MVTec AD folder layout for any category names.

    ROOT/<category>/train/good/*.png
    ROOT/<category>/test/<defect_type>/*.png          (``good`` = normal)
    ROOT/<category>/ground_truth/<defect_type>/<stem>_mask.png

A category with only ``train/good`` is valid for training. A deterministic share of
``train/good`` is held out as validation: never trained on, never fitted on, used to
calibrate thresholds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from simclr_ad.data.images import IMAGE_EXTENSIONS, display_path
from simclr_ad.errors import UserError

GOOD = "good"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image file with its labels. ``label`` is 1 for defective, 0 for good."""

    path: Path
    category: str
    defect_type: str
    label: int
    mask_path: Path | None = None


@dataclasses.dataclass(frozen=True)
class CategorySplit:
    """The samples of one category: training good, held-out validation good, and test."""

    category: str
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def find_categories(root: Path) -> list[str]:
    """Names of the sub-folders of ``root`` that have a ``train/good`` folder."""
    if not root.is_dir():
        raise UserError(f"data root {root} does not exist or is not a folder")
    return sorted(p.name for p in root.iterdir() if (p / "train" / GOOD).is_dir())


def resolve_categories(root: Path, requested: Sequence[str]) -> list[str]:
    """Check requested category names against the folder (empty: all found)."""
    found = find_categories(root)
    if not found:
        raise UserError(f"no categories under {root}: expected ROOT/<category>/train/good/")
    if not requested:
        return check_names(root, found)
    missing = [c for c in requested if c not in found]
    if missing:
        raise UserError(
            f"unknown category {', '.join(missing)} in {root}; categories found: {', '.join(found)}"
        )
    return check_names(root, list(dict.fromkeys(requested)))


def check_names(root: Path, names: list[str]) -> list[str]:
    """``names``, unless one is not valid UTF-8 (bytes Python keeps as lone surrogates): category
    names are written into the model's metadata, which must be UTF-8."""
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"category folder {display_path(root / name)} has a name that is not valid "
                "UTF-8; rename it, or leave it out with --categories"
            ) from None
    return names


def split_validation(
    samples: Sequence[Sample], fraction: float, minimum: int
) -> tuple[list[Sample], list[Sample]]:
    """Deterministically hold out good images for validation.

    The held-out set is ``round(fraction * n)`` images, raised to ``minimum`` where the category
    has at least ``4 * minimum`` images. Images are ranked by a hash of their file name, so the
    split does not depend on the seed, on the order of listing, or on files added later.
    """
    n = len(samples)
    n_val = round(fraction * n)
    if fraction > 0 and n >= 4 * minimum:
        n_val = max(n_val, minimum)
    n_val = min(n_val, max(n - 2, 0))
    ranked = sorted(samples, key=lambda s: hashlib.sha256(os.fsencode(s.path.name)).hexdigest())
    held = {s.path for s in ranked[:n_val]}
    return [s for s in samples if s.path not in held], [s for s in samples if s.path in held]


def _mask_for(root: Path, category: str, defect: str, image: Path) -> Path | None:
    mask = root / category / "ground_truth" / defect / f"{image.stem}_mask.png"
    return mask if mask.is_file() else None


def load_category(
    root: Path, category: str, *, val_fraction: float = 0.1, val_min: int = 5
) -> CategorySplit:
    """List the samples of one category and split off the validation good images."""
    base = root / category
    good = [Sample(p, category, GOOD, 0) for p in list_images(base / "train" / GOOD)]
    if not good:
        raise UserError(f"no training images in {base / 'train' / GOOD}")
    train, val = split_validation(good, val_fraction, val_min)
    test: list[Sample] = []
    test_root = base / "test"
    if test_root.is_dir():
        for folder in sorted(p for p in test_root.iterdir() if p.is_dir()):
            label = 0 if folder.name == GOOD else 1
            for path in list_images(folder):
                mask = None if label == 0 else _mask_for(root, category, folder.name, path)
                test.append(Sample(path, category, folder.name, label, mask))
    return CategorySplit(category, tuple(train), tuple(val), tuple(test))


def file_list_hash(samples: Sequence[Sample], root: Path) -> str:
    """A short identity of a set of files: their paths relative to ``root`` and their sizes."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        try:
            rel = s.path.relative_to(root)
        except ValueError:
            rel = s.path
        size = s.path.stat().st_size if s.path.exists() else -1
        digest.update(os.fsencode(rel.as_posix()) + f"\t{size}\n".encode())
    return digest.hexdigest()[:16]
