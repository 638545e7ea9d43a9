"""``simclr-ad evaluate``: score ``test/*`` with every scorer of a bundle, measure it, and write
the inspection report (``report.html``, from ``metrics.json``, ``scores.csv`` and the compact
``report_data/`` stored here, so ``simclr-ad report`` can rebuild it without the model).

Three steps, one module each: ``scores`` (test images → scores and maps per category),
``record`` (scores → ``EvaluationMetrics``, the typed record ``metrics.json`` holds) and
``outputs`` (the files and the terminal tables).

Thresholds come from the bundle (calibrated on good training images at training time); the test
set is only scored here, never used to choose anything. ``f1_max`` is the one test-fitted number
and is labelled as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from simclr_ad.detector_bundle import load_detector
from simclr_ad.errors import UserError
from simclr_ad.evaluation.outputs import OUTPUTS, format_tables, replacing_outputs, write_outputs
from simclr_ad.evaluation.record import CategoryMetrics, EvaluationMetrics, ScorerMetrics, measure
from simclr_ad.evaluation.scores import CategoryScores, ImageCounts, score_categories
from simclr_ad.report.page import REPORT_FILE

__all__ = [
    "OUTPUTS",
    "CategoryMetrics",
    "CategoryScores",
    "EvaluationMetrics",
    "EvaluationResult",
    "ImageCounts",
    "ScorerMetrics",
    "evaluate",
    "format_tables",
]


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """An evaluation: its record, the scores it rests on, and the report's path."""

    record: EvaluationMetrics
    categories: tuple[CategoryScores, ...]
    report: Path

    @property
    def metrics(self) -> dict[str, Any]:
        """What ``metrics.json`` holds, as plain values."""
        return self.record.to_dict()


def evaluate(
    model_dir: Path,
    root: Path,
    out: Path,
    *,
    categories: Sequence[str] = (),
    device: torch.device,
    overwrite: bool = False,
) -> EvaluationResult:
    """Score every test image with every scorer; write ``scores.csv``, ``val_scores.csv``,
    ``metrics.json`` and the report into ``out``."""
    if not root.is_dir():
        raise UserError(f"data root {root} does not exist or is not a folder")
    loaded = load_detector(model_dir)
    known = loaded.detector.categories
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise UserError(
            f"the model was not trained on {', '.join(unknown)}; it knows: {', '.join(known)}"
        )
    with replacing_outputs(out, overwrite):
        results = score_categories(loaded, root, categories, device)
        record = measure(
            loaded.detector, loaded.metadata, results, model_dir=model_dir, root=root, device=device
        )
        write_outputs(
            out,
            loaded.detector,
            record,
            results,
            train_log=model_dir.parent / "train_log.csv",
            device=device,
        )
    return EvaluationResult(record, results, out / REPORT_FILE)
