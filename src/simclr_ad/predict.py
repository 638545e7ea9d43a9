"""Batch prediction over files and folders: one CSV row per image, optional heatmap overlays.

An unreadable file gets its row with the error and the others go on; when none can be read the
command fails (after writing the rows). Images are decoded in a small thread pool (PIL releases
the GIL), a batch at a time, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from simclr_ad.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    UnreadableImageError,
    display_path,
    read_rgb,
)
from simclr_ad.errors import UserError
from simclr_ad.heatmap import overlay
from simclr_ad.outputs import check_output_file, check_output_folder
from simclr_ad.predictor import Prediction, Predictor, stack_images

CSV_COLUMNS = (
    "path",
    "category",
    "score",
    "normalized_score",
    "threshold",
    "is_anomalous",
    "error",
    "heatmap",
)


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """A file to score and the relative name of its heatmap: the folder-relative path with
    ``.png`` added to the whole file name (``a.jpg`` -> ``a.jpg.png``), so names never collide."""

    path: Path
    heatmap_name: Path


@dataclasses.dataclass(frozen=True)
class PredictSummary:
    """Counts of a batch prediction."""

    n_images: int
    n_anomalous: int
    n_errors: int
    seconds: float


def collect_images(paths: Sequence[Path]) -> list[ImageFile]:
    """Files as given, and the image files (by extension) under folders, recursively, sorted."""
    found: list[ImageFile] = []
    for root in paths:
        if root.is_dir():
            files = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            found += [ImageFile(p, _overlay_name(p.relative_to(root))) for p in files]
        elif root.is_file():
            found.append(ImageFile(root, _overlay_name(Path(root.name))))
        else:
            raise UserError(f"{root} does not exist")
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise UserError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {names}")
    return _unique_heatmap_names(found)


def _overlay_name(relative: Path) -> Path:
    """``sub/a.jpg`` -> ``sub/a.jpg.png``: distinct file names give distinct overlay names."""
    return relative.with_name(f"{relative.name}.png")


def _unique_heatmap_names(files: list[ImageFile]) -> list[ImageFile]:
    """Where two inputs (from different folders, or a file given twice) share an overlay name,
    the later one gets ``-2``, ``-3``... before ``.png``, skipping every name already taken."""
    taken = {item.heatmap_name for item in files}
    seen: set[Path] = set()
    unique = []
    for item in files:
        name, n = item.heatmap_name, 1
        while name in seen or (n > 1 and name in taken):
            n += 1
            name = item.heatmap_name.with_name(f"{item.heatmap_name.stem}-{n}.png")
        seen.add(name)
        unique.append(ImageFile(item.path, name))
    return unique


def check_outputs(out: Path | None, heatmaps: Path | None, *, overwrite: bool) -> None:
    """Refuse to replace an existing CSV or fill a non-empty heatmap folder without overwrite,
    and paths that cannot be written (a missing folder for the CSV, a file above either)."""
    if out is not None:
        check_output_file(out, "--out", parents=False)
    if heatmaps is not None:
        check_output_folder(heatmaps, "--heatmaps")
    if out is not None and out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another --out or add --overwrite")
    if heatmaps is not None and heatmaps.exists():
        if not heatmaps.is_dir():
            raise UserError(f"--heatmaps {heatmaps} exists and is not a folder")
        if any(heatmaps.iterdir()) and not overwrite:
            raise UserError(f"--heatmaps {heatmaps} is not empty; choose another or --overwrite")


def _decode(item: ImageFile, size: tuple[int, int], max_pixels: int) -> np.ndarray | str:
    """H×W×3 uint8 pixels, or the reason the file cannot be read."""
    try:
        return read_rgb(item.path, size, max_pixels=max_pixels)
    except UnreadableImageError as exc:
        return exc.reason


def _batches(
    files: Sequence[ImageFile],
    size: tuple[int, int],
    batch_size: int,
    pool: ThreadPoolExecutor,
    max_pixels: int,
) -> Iterator[list[tuple[ImageFile, np.ndarray | str]]]:
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        decoded = pool.map(lambda f: _decode(f, size, max_pixels), chunk)
        yield list(zip(chunk, decoded, strict=True))


def _row(
    item: ImageFile, category: str, prediction: Prediction | None, *, error: str, heatmap: str
) -> list[str]:
    if prediction is None:
        return [display_path(item.path), category, "", "", "", "", error, heatmap]
    return [
        display_path(item.path),
        category,
        f"{prediction.score:.6g}",
        f"{prediction.normalized_score:.6g}",
        f"{prediction.threshold:.6g}",
        str(prediction.is_anomalous).lower(),
        "",
        heatmap,
    ]


def predict_files(
    predictor: Predictor,
    files: Sequence[ImageFile],
    category: str,
    *,
    out: Path | None,
    heatmaps: Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> PredictSummary:
    """Score ``files`` as ``category``; CSV to ``out`` (stdout when None), overlays to ``heatmaps``.

    The CSV is written beside ``out`` and renamed into place when complete.

    Raises:
        UserError: when not one of ``files`` could be read (after the CSV with their reasons is
            written), so that the command ends with a non-zero exit code.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if max_pixels < 1:
        raise UserError(f"--max-pixels must be >= 1, got {max_pixels}")
    started = time.perf_counter()
    staging = None if out is None else out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with _open_csv(staging) as handle:
            n_anomalous, n_errors = _predict_into(
                predictor, files, category, handle, heatmaps, batch_size, progress, max_pixels
            )
        if staging is not None and out is not None:
            os.replace(staging, out)
    finally:
        if staging is not None:
            staging.unlink(missing_ok=True)
    if files and n_errors == len(files):
        where = "the error column" if out is None else str(out)
        raise UserError(
            f"none of the {len(files)} images could be read; the reasons are in {where}"
        )
    return PredictSummary(len(files), n_anomalous, n_errors, time.perf_counter() - started)


def _open_csv(path: Path | None) -> contextlib.AbstractContextManager[IO[str]]:
    if path is None:
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="")


def _predict_into(
    predictor: Predictor,
    files: Sequence[ImageFile],
    category: str,
    handle: IO[str],
    heatmaps: Path | None,
    batch_size: int,
    progress: bool,
    max_pixels: int,
) -> tuple[int, int]:
    """Write the CSV rows of ``files`` to ``handle``; returns (anomalous, unreadable) counts."""
    n_anomalous = n_errors = 0
    writer = csv.writer(handle)
    writer.writerow(CSV_COLUMNS)
    with (
        tqdm(total=len(files), unit="img", disable=not progress, file=sys.stderr) as bar,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        shape = predictor.input_shape(category)
        for batch in _batches(files, shape, batch_size, pool, max_pixels):
            readable = [i for i, (_, px) in enumerate(batch) if isinstance(px, np.ndarray)]
            predictions: dict[int, Prediction] = {}
            if readable:
                pixels = stack_images([batch[i][1] for i in readable])  # type: ignore[misc]
                results = predictor.predict(pixels, category, maps=heatmaps is not None)
                predictions = dict(zip(readable, results, strict=True))
            for i, (item, px) in enumerate(batch):
                found, written = predictions.get(i), ""
                if found is not None and heatmaps is not None and isinstance(px, np.ndarray):
                    written = _write_heatmap(heatmaps / item.heatmap_name, px, found)
                error = px if isinstance(px, str) else ""
                writer.writerow(_row(item, category, found, error=error, heatmap=written))
                n_anomalous += found is not None and found.is_anomalous
                n_errors += found is None
            bar.update(len(batch))
    return n_anomalous, n_errors


def _write_heatmap(path: Path, rgb: np.ndarray, prediction: Prediction) -> str:
    """The overlay saved as ``path``; its displayed path, or "" when there is no map."""
    if prediction.anomaly_map is None:
        return ""
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(rgb, prediction.anomaly_map, prediction.threshold).save(path)
    return display_path(path)
