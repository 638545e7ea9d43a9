"""Metrics: scores → the typed record of an evaluation, which ``metrics.json`` holds.

``EvaluationMetrics.to_dict()`` is the file's content, key for key in the order the report,
``benchmarks/quality.py`` and older evaluations' readers know. Thresholds come from the bundle
(calibrated on good training images); the test set is only measured here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr_ad.calibration import Calibration, GoodScore, highest_good
from simclr_ad.data.images import display_path
from simclr_ad.data.mvtec import file_list_hash
from simclr_ad.detector import Detector, scorer_names
from simclr_ad.evaluation.scores import CategoryScores, ImageCounts
from simclr_ad.metrics import (
    ConfidenceInterval,
    DefectAUROC,
    ImageMetrics,
    aupro,
    image_metrics,
    per_defect_auroc,
    pixel_auroc,
)
from simclr_ad.progress import progress_bar


@dataclasses.dataclass(frozen=True)
class CategoryMetrics:
    """One scorer on one category.

    ``auroc_vs_val_good`` ranks the test defects against the good *training* images that set the
    threshold (held out, or cross-fitted: each scored by a detector fitted without it): a control
    free of any shift between the training and the test good parts (MVTec screw's good test parts
    are darker than every training part). None where there are no such scores or no defects.
    ``highest_good`` lists the good training images that score highest among those that set the
    threshold (``calibration.highest_good``), for an inspector to check.
    ``pixel_auroc`` and ``aupro`` exist for the patch scorer on a category with masks.
    """

    image: ImageMetrics
    auroc_vs_val_good: float | None
    auroc_vs_val_good_ci95: ConfidenceInterval | None
    calibration: Calibration
    highest_good: list[GoodScore]
    pixel_auroc: float | None
    aupro: float | None
    per_defect: dict[str, DefectAUROC]
    counts: ImageCounts

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` entry ``scorers.<scorer>.categories.<category>``."""
        ci = self.auroc_vs_val_good_ci95
        image = self.image.to_dict() | {
            "auroc_vs_val_good": self.auroc_vs_val_good,
            "auroc_vs_val_good_ci95": None if ci is None else list(ci),
            "calibration": {**self.calibration.to_dict(), "promise": self.calibration.promise},
            "highest_good": [g._asdict() for g in self.highest_good],
        }
        return {
            "image": image,
            "pixel": {"auroc": self.pixel_auroc, "aupro": self.aupro},
            "per_defect": {k: dataclasses.asdict(v) for k, v in self.per_defect.items()},
            "counts": dataclasses.asdict(self.counts),
        }


@dataclasses.dataclass(frozen=True)
class ScorerMetrics:
    """One scorer: its metrics per category and their means (categories without a value, such
    as a global scorer's pixel AUROC, are left out of a mean; None if none has one)."""

    categories: dict[str, CategoryMetrics]

    def mean(self) -> dict[str, float | None]:
        """Mean image AUROC, pixel AUROC, AUPRO and F1 over the categories."""
        values = self.categories.values()
        return {
            "image_auroc": mean_present([m.image.auroc for m in values]),
            "pixel_auroc": mean_present([m.pixel_auroc for m in values]),
            "aupro": mean_present([m.aupro for m in values]),
            "f1": mean_present([m.image.f1 for m in values]),
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` entry ``scorers.<scorer>``."""
        per_category = {name: m.to_dict() for name, m in self.categories.items()}
        return {"categories": per_category, "mean": self.mean()}


@dataclasses.dataclass(frozen=True)
class Timing:
    """Scoring time of the test images (decoding excluded) on ``device``."""

    images: int
    seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Rounded for ``metrics.json``; rates None when there is nothing to divide by."""
        seconds, images = self.seconds, self.images
        return {
            "images": images,
            "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 2) if seconds > 0 else None,
            "ms_per_image": round(1000 * seconds / images, 2) if images else None,
            "device": self.device,
        }


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """What was evaluated: model and data identity, versions, training time."""

    model_path: str
    model_sha256: str | None
    train_files_hash: str | None
    test_files_hash: str
    epochs_trained: int | None
    input_shapes: dict[str, Any] | None
    pretrained_recipe: dict[str, Any] | None
    auto_selection: dict[str, Any] | None
    training_seconds: float | None
    versions: dict[str, str]


@dataclasses.dataclass(frozen=True)
class EvaluationMetrics:
    """The record of one evaluation: what ``metrics.json`` holds.

    ``primary`` is the scorer whose threshold decides; ``evaluated`` the UTC time (ISO 8601);
    ``config`` and ``detector`` the training configuration and detector settings as stored in
    the bundle.
    """

    primary: str
    evaluated: str
    scorers: dict[str, ScorerMetrics]
    config: dict[str, Any]
    detector: dict[str, Any]
    timing: Timing
    run: RunIdentity

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, in ``metrics.json``'s order."""
        return {
            "primary": self.primary,
            "evaluated": self.evaluated,
            "scorers": {name: s.to_dict() for name, s in self.scorers.items()},
            "config": self.config,
            "detector": self.detector,
            "timing": self.timing.to_dict(),
            "run": dataclasses.asdict(self.run),
        }

    def to_json(self) -> str:
        """The text of ``metrics.json``."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def measure(
    detector: Detector,
    metadata: Mapping[str, Any],
    results: Sequence[CategoryScores],
    *,
    model_dir: Path,
    root: Path,
    device: torch.device,
) -> EvaluationMetrics:
    """The record of an evaluation from its scores and the bundle they came from."""
    return EvaluationMetrics(
        primary=detector.settings.primary,
        evaluated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        scorers=scorer_metrics(detector, results),
        config=metadata["training"]["config"],
        detector=detector.settings.to_dict(),
        timing=Timing(
            images=sum(len(r.samples) for r in results),
            seconds=sum(r.seconds for r in results),
            device=str(device),
        ),
        run=run_identity(metadata, results, model_dir=model_dir, root=root),
    )


def scorer_metrics(
    detector: Detector, results: Sequence[CategoryScores]
) -> dict[str, ScorerMetrics]:
    """Per scorer of the detector (primary first), its metrics on each category."""
    scorers: dict[str, ScorerMetrics] = {}
    names = scorer_names(detector.settings)
    with progress_bar(desc="metrics", total=len(names) * len(results), unit="scorer") as bar:
        for name in names:
            per_category: dict[str, CategoryMetrics] = {}
            for result in results:
                per_category[result.category] = category_metrics(detector, result, name)
                bar.update()
            scorers[name] = ScorerMetrics(per_category)
    return scorers


def category_metrics(detector: Detector, result: CategoryScores, scorer: str) -> CategoryMetrics:
    """The metrics of one scorer on one category, at the bundle's calibrated threshold."""
    labels = result.labels
    scores = result.detection.scores[scorer].numpy()
    calibration = detector.scorer_set(result.category).calibrations[scorer]
    pixel: tuple[float | None, float | None] = (None, None)
    if scorer == "patch" and result.detection.maps is not None and result.masks.any():
        maps = result.detection.maps.numpy()
        pixel = (pixel_auroc(maps, result.masks), aupro(maps, result.masks))
    control = _against_good_training_images(
        result, scores[labels == 1], scorer, calibration.threshold
    )
    defects = [s.defect_type for s in result.samples]
    return CategoryMetrics(
        image=image_metrics(scores, labels, calibration.threshold),
        auroc_vs_val_good=None if control is None else control.auroc,
        auroc_vs_val_good_ci95=None if control is None else control.auroc_ci95,
        calibration=calibration,
        highest_good=_highest_good(result, scorer, calibration.target_fpr),
        pixel_auroc=pixel[0],
        aupro=pixel[1],
        per_defect=per_defect_auroc(scores, labels, defects),
        counts=result.counts,
    )


def _against_good_training_images(
    result: CategoryScores, defect_scores: np.ndarray, scorer: str, threshold: float
) -> ImageMetrics | None:
    """The test defects ranked against the good scores that set the threshold (None without
    them or without defects)."""
    if result.val_scores is None or defect_scores.size == 0:
        return None
    good = result.val_scores[scorer].numpy()
    labels = np.concatenate([np.zeros(good.size), np.ones(defect_scores.size)])
    return image_metrics(np.concatenate([good, defect_scores]), labels, threshold)


def _highest_good(result: CategoryScores, scorer: str, target_fpr: float) -> list[GoodScore]:
    """The good training images whose scores set the threshold, highest first (none without
    their scores)."""
    if result.val_scores is None:
        return []
    paths = [display_path(s.path) for s in result.val_samples]
    return highest_good(result.val_scores[scorer].numpy(), paths, target_fpr)


def run_identity(
    metadata: Mapping[str, Any], results: Sequence[CategoryScores], *, model_dir: Path, root: Path
) -> RunIdentity:
    """The model, data and library versions of an evaluation (versions of the training run,
    plus those of the libraries the evaluation itself used)."""
    training = metadata["training"]
    versions = dict(metadata.get("versions", {}))
    for package in ("numpy", "scikit-learn", "matplotlib", "timm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return RunIdentity(
        model_path=str(model_dir),
        model_sha256=metadata.get("tensors_sha256"),
        train_files_hash=training.get("train_files_hash"),
        test_files_hash=file_list_hash([s for r in results for s in r.samples], root),
        epochs_trained=training.get("epochs_trained"),
        input_shapes=metadata.get("preprocessing", {}).get("input_shapes"),
        pretrained_recipe=training.get("pretrained_recipe"),
        auto_selection=training.get("auto_selection"),
        training_seconds=training.get("seconds"),
        versions=versions,
    )


def mean_present(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None or NaN; None if there are none."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(present)) if present else None
