"""Batch prediction over files and folders: one row per image, optional heatmap overlays.

An unreadable file gets its row with the error and the others go on; when none can be read the
command fails (after writing the rows). Images are decoded in a small thread pool (PIL releases
the GIL), a batch at a time, so memory stays bounded.

Rows are written as CSV (one line per image, streamed), JSON (a list of objects, streamed) or a
table for people (aligned columns, written at the end). Each row says which threshold decided:
the calibrated one, a fixed ``--threshold`` or one re-derived for ``--target-fpr``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

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
from simclr_ad.predictor import Decision, Prediction, Predictor, stack_images
from simclr_ad.progress import progress_bar

FORMATS = ("csv", "json", "table")
COLUMNS = (
    "path",
    "category",
    "score",
    "normalized_score",
    "threshold",
    "threshold_source",
    "target_fpr",
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


def decode_or_reason(
    item: ImageFile, size: tuple[int, int], max_pixels: int = MAX_PIXELS
) -> np.ndarray | str:
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
        decoded = pool.map(lambda f: decode_or_reason(f, size, max_pixels), chunk)
        yield list(zip(chunk, decoded, strict=True))


@dataclasses.dataclass(frozen=True)
class Row:
    """One image's line of output; ``prediction`` is None when the file could not be read."""

    path: str
    category: str
    prediction: Prediction | None
    error: str
    heatmap: str


class RowWriter(Protocol):
    """Where the rows go, in one of ``FORMATS``: ``add`` each row, then ``close`` once."""

    def add(self, row: Row) -> None: ...

    def close(self) -> None: ...


def default_format(out: Path | None, stdout: IO[str]) -> str:
    """``table`` when the rows go to a terminal, ``csv`` when they go to a file or a pipe."""
    return "table" if out is None and stdout.isatty() else "csv"


class CsvRows:
    """``COLUMNS`` as a header, then one line per row as it comes."""

    def __init__(self, handle: IO[str], decision: Decision) -> None:
        self.writer = csv.writer(handle)
        self.decision = decision
        self.writer.writerow(COLUMNS)

    def add(self, row: Row) -> None:
        p, d = row.prediction, self.decision
        if p is None:
            self.writer.writerow([row.path, row.category, "", "", "", "", "", "", row.error, ""])
            return
        target = "" if d.target_fpr is None else f"{d.target_fpr:g}"
        self.writer.writerow(
            [
                row.path,
                row.category,
                f"{p.score:.6g}",
                f"{p.normalized_score:.6g}",
                f"{p.threshold:.6g}",
                d.source,
                target,
                str(p.is_anomalous).lower(),
                "",
                row.heatmap,
            ]
        )

    def close(self) -> None:
        """Nothing left to write: each line went out as it came."""


class JsonRows:
    """A JSON list of objects with the keys ``COLUMNS`` (null where a value does not apply),
    one object per line as it comes."""

    def __init__(self, handle: IO[str], decision: Decision) -> None:
        self.handle = handle
        self.decision = decision
        self.count = 0

    def add(self, row: Row) -> None:
        p, d = row.prediction, self.decision
        values: dict[str, Any] = dict.fromkeys(COLUMNS)
        values |= {"path": row.path, "category": row.category}
        if p is None:
            values["error"] = row.error
        else:
            values |= {
                "score": p.score,
                "normalized_score": p.normalized_score,
                "threshold": p.threshold,
                "threshold_source": d.source,
                "target_fpr": d.target_fpr,
                "is_anomalous": p.is_anomalous,
                "heatmap": row.heatmap or None,
            }
        self.handle.write(("[\n  " if self.count == 0 else ",\n  ") + json.dumps(values))
        self.count += 1

    def close(self) -> None:
        self.handle.write("[]\n" if self.count == 0 else "\n]\n")


class TableRows:
    """Aligned columns for people, written at the end (the widths need every row), under a line
    saying which threshold decided and what it rests on."""

    def __init__(self, handle: IO[str], decision: Decision) -> None:
        self.handle = handle
        self.decision = decision
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def close(self) -> None:
        d = self.decision
        category = self.rows[0].category if self.rows else ""
        self.handle.write(f"{category}: threshold {d.threshold:.6g} ({d.source}: {d.rule})\n")
        heatmaps = any(row.heatmap for row in self.rows)
        header = ["path", "score", "score/threshold", "verdict"] + ["heatmap"] * heatmaps
        lines = [header] + [self._cells(row)[: len(header)] for row in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        for line in lines:
            cells = [
                cell.rjust(w) if i in (1, 2) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ]
            self.handle.write("  ".join(cells).rstrip() + "\n")

    @staticmethod
    def _cells(row: Row) -> list[str]:
        p = row.prediction
        if p is None:
            return [row.path, "", "", f"unreadable: {row.error}", ""]
        verdict = "ANOMALOUS" if p.is_anomalous else "good"
        return [row.path, f"{p.score:.4g}", f"{p.normalized_score:.3f}", verdict, row.heatmap]


WRITERS: dict[str, Callable[[IO[str], Decision], RowWriter]] = {
    "csv": CsvRows,
    "json": JsonRows,
    "table": TableRows,
}


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
    output_format: str = "csv",
) -> PredictSummary:
    """Score ``files`` as ``category``; rows to ``out`` (stdout when None) as ``output_format``
    (``FORMATS``), overlays to ``heatmaps``.

    The output is written beside ``out`` and renamed into place when complete.

    Raises:
        UserError: when not one of ``files`` could be read (after the rows with their reasons
            are written), so that the command ends with a non-zero exit code.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if max_pixels < 1:
        raise UserError(f"--max-pixels must be >= 1, got {max_pixels}")
    if output_format not in WRITERS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    started = time.perf_counter()
    staging = None if out is None else out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with _open_output(staging) as handle:
            rows = WRITERS[output_format](handle, predictor.decision(category))
            n_anomalous, n_errors = _predict_into(
                predictor, files, category, rows, heatmaps, batch_size, progress, max_pixels
            )
            rows.close()
        if staging is not None and out is not None:
            os.replace(staging, out)
    finally:
        if staging is not None:
            staging.unlink(missing_ok=True)
    if files and n_errors == len(files):
        column = "verdict" if output_format == "table" else "error"
        where = f"the {column} column" if out is None else str(out)
        raise UserError(
            f"none of the {len(files)} images could be read; the reasons are in {where}"
        )
    return PredictSummary(len(files), n_anomalous, n_errors, time.perf_counter() - started)


def _open_output(path: Path | None) -> contextlib.AbstractContextManager[IO[str]]:
    if path is None:
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="")


def _predict_into(
    predictor: Predictor,
    files: Sequence[ImageFile],
    category: str,
    rows: RowWriter,
    heatmaps: Path | None,
    batch_size: int,
    progress: bool,
    max_pixels: int,
) -> tuple[int, int]:
    """Add the rows of ``files`` to ``rows``; returns (anomalous, unreadable) counts."""
    n_anomalous = n_errors = 0
    with (
        progress_bar(total=len(files), desc="predict", unit="img", enabled=progress) as bar,
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
                rows.add(Row(display_path(item.path), category, found, error, written))
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
