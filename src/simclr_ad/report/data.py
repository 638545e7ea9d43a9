"""What a report needs, stored compactly next to the evaluation so it can be rebuilt without the
model: per category ``EVAL/report_data/<category>.npz`` (embeddings ``h`` of a subset of the
training good images and of every test image, and a gallery of thumbnails with their anomaly
maps, masks and nearest good training image), plus ``run.json`` (the training loss curve).

Arrays only, saved with ``np.savez_compressed`` and read back without pickle.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from simclr_ad.errors import UserError

THUMBNAIL_SIZE = 128  # px: gallery images are thumbnails, never the full-size image
MAX_TRAIN_POINTS = 200  # training good images embedded for t-SNE/PCA and nearest neighbours
EXAMPLES_PER_DEFECT = 2  # the lowest- and the highest-scoring image of each defect type
WORST_CASES = 3
DATA_DIR = "report_data"
GOOD_HIGHEST = "good_highest"  # the highest-scoring good parts (false positives when flagged)
DEFECT_LOWEST = "defect_lowest"  # the lowest-scoring defective parts (missed when not flagged)


@dataclasses.dataclass(frozen=True)
class Gallery:
    """Which test images a report shows: ``index`` into the category's test images, and the
    ``role`` of each (``defect:<type>``, ``GOOD_HIGHEST`` or ``DEFECT_LOWEST``)."""

    index: NDArray[np.int64]
    role: NDArray[np.str_]


@dataclasses.dataclass(frozen=True)
class CategoryReportData:
    """The stored half of one category's report (G = gallery images, T = thumbnail side).

    Attributes:
        paths: the test images, in the order of ``scores.csv``.
        h_train: float16 M×C embeddings of (a subset of) the training good images.
        h_test: float16 N×C embeddings of the test images.
        gallery: the images shown.
        thumbnails: uint8 G×T×T×3.
        maps: float16 G×T×T anomaly maps (None when no scorer makes maps).
        masks: bool G×T×T ground truth.
        neighbours: uint8 G×T×T×3, the nearest training good image of each (by ``h``).
    """

    paths: NDArray[np.str_]
    h_train: NDArray[np.float16]
    h_test: NDArray[np.float16]
    gallery: Gallery
    thumbnails: NDArray[np.uint8]
    maps: NDArray[np.float16] | None
    masks: NDArray[np.bool_]
    neighbours: NDArray[np.uint8]


def spread_subset(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def select_gallery(
    scores: NDArray[Any],
    labels: NDArray[Any],
    defects: Sequence[str],
    *,
    per_defect: int = EXAMPLES_PER_DEFECT,
    worst: int = WORST_CASES,
) -> Gallery:
    """Per defect type a few examples spread over its score range (lowest to highest), then the
    highest-scoring good parts and the lowest-scoring defective parts."""
    order = np.argsort(scores, kind="stable")
    index: list[int] = []
    role: list[str] = []
    for defect in sorted({d for d, y in zip(defects, labels, strict=True) if y == 1}):
        ranked = [int(i) for i in order if defects[i] == defect]
        chosen = [ranked[j] for j in spread_subset(len(ranked), per_defect)]
        index += chosen
        role += [f"defect:{defect}"] * len(chosen)
    good = [int(i) for i in order[::-1] if labels[i] == 0][:worst]
    missed = [int(i) for i in order if labels[i] == 1][:worst]
    index += good + missed
    role += [GOOD_HIGHEST] * len(good) + [DEFECT_LOWEST] * len(missed)
    return Gallery(np.array(index, dtype=np.int64), np.array(role, dtype=np.str_))


def fit_within(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) scaled down to a longer side of at most ``size``, keeping the aspect ratio."""
    H, W = shape
    scale = min(1.0, size / max(H, W))
    return max(1, round(H * scale)), max(1, round(W * scale))


def thumbnails(pixels: torch.Tensor, size: int = THUMBNAIL_SIZE) -> NDArray[np.uint8]:
    """uint8 N×3×H×W -> uint8 N×h×w×3, the longer side at most ``size`` (antialiased)."""
    N, _, H, W = pixels.shape
    target = fit_within((H, W), size)
    if N == 0:
        return np.zeros((0, *target, 3), dtype=np.uint8)
    x = pixels.float()
    if target != (H, W):
        x = F.interpolate(x, size=target, mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def downsample(maps: torch.Tensor, size: int = THUMBNAIL_SIZE) -> torch.Tensor:
    """N×H×W float maps (or masks) -> N×h×w, averaged over areas, the longer side at most
    ``size``."""
    target = fit_within((maps.shape[-2], maps.shape[-1]), size)
    if target == tuple(maps.shape[-2:]) or maps.shape[0] == 0:
        return maps.float()
    return F.interpolate(maps[:, None].float(), size=target, mode="area")[:, 0]


def nearest_neighbours(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Index into ``reference`` (M×C) of the nearest row, by cosine similarity, for each of N×C."""
    similarity = F.normalize(query.float(), dim=1) @ F.normalize(reference.float(), dim=1).T
    return similarity.argmax(dim=1)


def collect_category(
    paths: Sequence[str],
    pixels: torch.Tensor,
    masks: torch.Tensor,
    maps: torch.Tensor | None,
    h_test: torch.Tensor,
    train_pixels: torch.Tensor,
    h_train: torch.Tensor,
    gallery: Gallery,
) -> CategoryReportData:
    """Thumbnails, downsampled maps and masks, and nearest training images of the gallery.

    Args:
        paths: the N test images.
        pixels: uint8 N×3×S×S test images.
        masks: bool N×S×S ground truth.
        maps: N×S×S anomaly maps, or None.
        h_test: N×C embeddings of the test images.
        train_pixels: uint8 M×3×S×S training good images.
        h_train: M×C their embeddings.
        gallery: which test images to keep.
    """
    index = torch.from_numpy(gallery.index)
    nearest = nearest_neighbours(h_test[index], h_train) if len(index) else index
    return CategoryReportData(
        paths=np.array(paths, dtype=np.str_),
        h_train=h_train.numpy().astype(np.float16),
        h_test=h_test.numpy().astype(np.float16),
        gallery=gallery,
        thumbnails=thumbnails(pixels[index]),
        maps=None if maps is None else downsample(maps[index]).numpy().astype(np.float16),
        masks=downsample(masks[index].float()).numpy() >= 0.5,
        neighbours=thumbnails(train_pixels[nearest]),
    )


def save_category(path: Path, data: CategoryReportData) -> None:
    """``data`` as one compressed ``.npz``."""
    arrays: dict[str, NDArray[Any]] = {
        "paths": data.paths,
        "h_train": data.h_train,
        "h_test": data.h_test,
        "gallery_index": data.gallery.index,
        "gallery_role": data.gallery.role,
        "thumbnails": data.thumbnails,
        "masks": data.masks,
        "neighbours": data.neighbours,
    }
    if data.maps is not None:
        arrays["maps"] = data.maps
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, allow_pickle=False, **arrays)


def load_category_data(path: Path) -> CategoryReportData:
    """Read a :func:`save_category` file; a missing or damaged file is a UserError."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read report data {path}: {exc}") from None
    required = {"paths", "h_train", "h_test", "gallery_index", "gallery_role", "thumbnails"}
    missing = sorted((required | {"masks", "neighbours"}) - set(arrays))
    if missing:
        raise UserError(f"report data {path} lacks {', '.join(missing)}; rerun evaluate")
    return CategoryReportData(
        paths=arrays["paths"],
        h_train=arrays["h_train"],
        h_test=arrays["h_test"],
        gallery=Gallery(arrays["gallery_index"], arrays["gallery_role"]),
        thumbnails=arrays["thumbnails"],
        maps=arrays.get("maps"),
        masks=arrays["masks"],
        neighbours=arrays["neighbours"],
    )


@dataclasses.dataclass(frozen=True)
class CategoryRows:
    """One category's rows of ``scores.csv``: one score array per scorer."""

    paths: list[str]
    defects: list[str]
    labels: NDArray[np.int64]
    scores: dict[str, NDArray[np.float64]]


def read_scores_csv(path: Path, scorers: Sequence[str]) -> dict[str, CategoryRows]:
    """``scores.csv`` grouped by category, in file order."""
    rows: dict[str, list[dict[str, str]]] = {}
    try:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(row["category"], []).append(row)
        return {
            category: CategoryRows(
                paths=[r["path"] for r in group],
                defects=[r["defect_type"] for r in group],
                labels=np.array([int(r["label"]) for r in group], dtype=np.int64),
                scores={s: np.array([float(r[s]) for r in group]) for s in scorers},
            )
            for category, group in rows.items()
        }
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {type(exc).__name__} {exc}") from None


def write_run_data(path: Path, train_log: Path) -> None:
    """``run.json``: the training loss per epoch from the run's ``train_log.csv`` (empty when the
    run had no SimCLR epochs or its log is not beside the model)."""
    losses: list[dict[str, float]] = []
    if train_log.is_file():
        try:
            with open(train_log, newline="") as handle:
                losses = [
                    {"epoch": int(r["epoch"]), "loss": float(r["loss"])}
                    for r in csv.DictReader(handle)
                ]
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"cannot read the training log {train_log}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"history": losses}, indent=1) + "\n")


def read_run_data(path: Path) -> list[dict[str, float]]:
    """The loss history of :func:`write_run_data` (empty when the file is absent)."""
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["history"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
