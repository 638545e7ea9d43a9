"""``simclr-ad evaluate``: score ``test/*`` with every scorer of a bundle, measure it, and write
the inspection report (``report.html``, from ``metrics.json``, ``scores.csv`` and the compact
``report_data/`` stored here, so ``simclr-ad report`` can rebuild it without the model).

Thresholds come from the bundle (calibrated on good training images at training time); the test
set is only scored here, never used to choose anything. ``f1_max`` is the one test-fitted number
and is labelled as such.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr_ad.data.images import UnreadableImageError, display_path, read_mask
from simclr_ad.data.mvtec import Sample, file_list_hash, load_category
from simclr_ad.data.store import decode_images
from simclr_ad.detector import Detection, scorer_names
from simclr_ad.detector_bundle import LoadedDetector, load_detector
from simclr_ad.errors import UserError
from simclr_ad.metrics import aupro, image_metrics, per_defect_auroc, pixel_auroc
from simclr_ad.pipeline import held_out_fraction
from simclr_ad.progress import progress_bar
from simclr_ad.report.data import (
    DATA_DIR,
    MAX_TRAIN_POINTS,
    CategoryReportData,
    collect_category,
    save_category,
    select_gallery,
    spread_subset,
    write_run_data,
)
from simclr_ad.report.page import FIGURES_DIR, REPORT_FILE, build_report

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CategoryScores:
    """The test images of one category that decoded, their masks and the detection."""

    category: str
    samples: tuple[Sample, ...]
    masks: np.ndarray  # N×S×S bool
    detection: Detection
    counts: dict[str, int]
    seconds: float
    pixels: torch.Tensor  # uint8 N×3×S×S, for the report's thumbnails
    train: tuple[Sample, ...]  # the good training images the detector was fitted on
    val_scores: dict[str, torch.Tensor] | None = None  # held-out good training images, per scorer
    val_samples: tuple[Sample, ...] = ()  # the held-out images that decoded, in val_scores' order


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """``metrics`` is what ``metrics.json`` holds; ``scores`` the per-image rows."""

    metrics: dict[str, Any]
    categories: tuple[CategoryScores, ...]
    report: Path


OUTPUTS = ("metrics.json", "scores.csv", "val_scores.csv", REPORT_FILE, DATA_DIR, FIGURES_DIR)


@contextlib.contextmanager
def _replacing_outputs(out: Path, overwrite: bool) -> Iterator[None]:
    """Refuse to replace an earlier evaluation without ``overwrite``; with it, set the earlier
    outputs aside in ``out/.previous-*`` while the new ones are written: deleted once the new
    evaluation is complete, put back (the partial new outputs removed) if it fails."""
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(
            f"{out} already holds {', '.join(existing)}; use --overwrite or another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    previous = Path(tempfile.mkdtemp(prefix=".previous-", dir=out))
    try:
        for name in existing:
            os.replace(out / name, previous / name)
        try:
            yield
        except BaseException:
            for name in OUTPUTS:
                if (out / name).is_dir():
                    shutil.rmtree(out / name)
                elif (out / name).exists():
                    (out / name).unlink()
            for name in existing:
                os.replace(previous / name, out / name)
            raise
    finally:
        shutil.rmtree(previous, ignore_errors=True)


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
    val_scores, val_samples = _good_scores(loaded, root, category)
    if split.val:  # the lighting-shift-free control: held-out good images of the training set
        val = decode_images(split.val, size)
        if val.samples:
            detected = loaded.detector.detect(
                val.pixels,
                category,
                device=device,
                maps=False,
                progress=f"{category}: scoring held-out good",
            )
            val_scores, val_samples = detected.scores, val.samples
    counts = {
        "train_good": len(split.train),
        "val_good": len(split.val),
        "test_good": sum(s.label == 0 for s in decoded.samples),
        "test_defect": sum(s.label == 1 for s in decoded.samples),
        "test_unreadable": len(decoded.skipped),
    }
    return CategoryScores(
        category,
        decoded.samples,
        masks,
        detection,
        counts,
        seconds,
        decoded.pixels,
        split.train,
        val_scores=val_scores,
        val_samples=val_samples,
    )


def _good_scores(
    loaded: LoadedDetector, root: Path, category: str
) -> tuple[dict[str, torch.Tensor] | None, tuple[Sample, ...]]:
    """The cross-fitted good scores that set the thresholds, with their images, from the bundle
    (None where the thresholds came from a held-out split, which is scored instead)."""
    files = loaded.metadata["training"].get("calibration_files", {}).get(category)
    scores = loaded.detector.scorer_set(category).good_scores
    if not files or not scores:
        return None, ()
    samples = tuple(Sample(root / name, category, "good", 0) for name in files)
    return dict(scores), samples


def _read_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask; an unreadable one refuses the evaluation (pixel metrics need it)."""
    try:
        return read_mask(path, size)
    except UnreadableImageError as exc:
        raise UserError(f"ground-truth mask {exc}; fix or remove it") from None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(present)) if present else None


def category_metrics(loaded: LoadedDetector, result: CategoryScores, scorer: str) -> dict[str, Any]:
    """The metrics.json entry of one scorer on one category."""
    labels = np.array([s.label for s in result.samples])
    scores = result.detection.scores[scorer].numpy()
    threshold = loaded.detector.threshold(result.category, scorer)
    pixel: dict[str, float | None] = {"auroc": None, "aupro": None}
    if scorer == "patch" and result.detection.maps is not None and result.masks.any():
        maps = result.detection.maps.numpy()
        pixel = {"auroc": pixel_auroc(maps, result.masks), "aupro": aupro(maps, result.masks)}
    defects = [s.defect_type for s in result.samples]
    image = image_metrics(scores, labels, threshold).to_dict()
    image |= _auroc_vs_val_good(result, scores[labels == 1], scorer, threshold)
    calibration = loaded.detector.scorer_set(result.category).calibrations[scorer]
    image["calibration"] = {**calibration.to_dict(), "promise": calibration.promise}
    return {
        "image": image,
        "pixel": pixel,
        "per_defect": {
            k: dataclasses.asdict(v) for k, v in per_defect_auroc(scores, labels, defects).items()
        },
        "counts": result.counts,
    }


def _auroc_vs_val_good(
    result: CategoryScores, defect_scores: np.ndarray, scorer: str, threshold: float
) -> dict[str, Any]:
    """AUROC (and CI) of the test defects against the good *training* images that set the
    threshold: held out, or cross-fitted (each scored by a detector fitted without it).

    A control free of any shift between the training and the test good parts (MVTec screw's
    good test parts are darker than every training part): both negatives and the fitted data
    come from the same acquisition. None where a category has no such scores or no defects.
    """
    if result.val_scores is None or defect_scores.size == 0:
        return {"auroc_vs_val_good": None, "auroc_vs_val_good_ci95": None}
    good = result.val_scores[scorer].numpy()
    labels = np.concatenate([np.zeros(good.size), np.ones(defect_scores.size)])
    control = image_metrics(np.concatenate([good, defect_scores]), labels, threshold)
    return {
        "auroc_vs_val_good": control.auroc,
        "auroc_vs_val_good_ci95": control.to_dict()["auroc_ci95"],
    }


def evaluate(
    model_dir: Path,
    root: Path,
    out: Path,
    *,
    categories: Sequence[str] = (),
    device: torch.device,
    overwrite: bool = False,
) -> EvaluationResult:
    """Score every test image with every scorer; write ``scores.csv`` and ``metrics.json``."""
    if not root.is_dir():
        raise UserError(f"data root {root} does not exist or is not a folder")
    loaded = load_detector(model_dir)
    known = loaded.detector.categories
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise UserError(
            f"the model was not trained on {', '.join(unknown)}; it knows: {', '.join(known)}"
        )
    with _replacing_outputs(out, overwrite):
        return _evaluate_into(out, loaded, model_dir, root, categories, device)


def _evaluate_into(
    out: Path,
    loaded: LoadedDetector,
    model_dir: Path,
    root: Path,
    categories: Sequence[str],
    device: torch.device,
) -> EvaluationResult:
    """Score, compute the metrics and write every output of an evaluation into ``out``."""
    known = loaded.detector.categories
    results = tuple(
        score_category(loaded, root, c, device)
        for c in (categories or _with_test_images(root, known))
    )
    scorers = scorer_metrics(loaded, results)
    n_images = sum(len(r.samples) for r in results)
    seconds = sum(r.seconds for r in results)
    metrics = {
        "primary": loaded.detector.settings.primary,
        "evaluated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "scorers": scorers,
        "config": loaded.metadata["training"]["config"],
        "detector": loaded.detector.settings.to_dict(),
        "timing": {
            "images": n_images,
            "seconds": round(seconds, 3),
            "images_per_second": round(n_images / seconds, 2) if seconds > 0 else None,
            "ms_per_image": round(1000 * seconds / n_images, 2) if n_images else None,
            "device": str(device),
        },
    }
    metrics["run"] = run_identity(loaded, model_dir, root, results)
    evaluation = EvaluationResult(metrics, results, out / REPORT_FILE)
    write_scores_csv(out / "scores.csv", loaded, evaluation)
    write_val_scores_csv(out / "val_scores.csv", loaded, evaluation)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(out, loaded, model_dir, results, device)
    return evaluation


def scorer_metrics(
    loaded: LoadedDetector, results: Sequence[CategoryScores]
) -> dict[str, dict[str, Any]]:
    """``metrics.json``'s ``scorers``: per scorer, its metrics on each category and their mean."""
    scorers: dict[str, dict[str, Any]] = {}
    names = scorer_names(loaded.detector.settings)
    with progress_bar(desc="metrics", total=len(names) * len(results), unit="scorer") as bar:
        for name in names:
            per_category: dict[str, Any] = {}
            for result in results:
                per_category[result.category] = category_metrics(loaded, result, name)
                bar.update()
            scorers[name] = {
                "categories": per_category,
                "mean": {
                    "image_auroc": _mean([m["image"]["auroc"] for m in per_category.values()]),
                    "pixel_auroc": _mean([m["pixel"]["auroc"] for m in per_category.values()]),
                    "aupro": _mean([m["pixel"]["aupro"] for m in per_category.values()]),
                    "f1": _mean([m["image"]["f1"] for m in per_category.values()]),
                },
            }
    return scorers


def write_report(
    out: Path,
    loaded: LoadedDetector,
    model_dir: Path,
    results: Sequence[CategoryScores],
    device: torch.device,
) -> None:
    """The report's stored data (``report_data/``, one step per category) and ``report.html``."""
    with progress_bar(desc="report", total=len(results) + 1, unit="step") as bar:
        for result in results:
            bar.set_postfix_str(result.category)
            save_category(
                out / DATA_DIR / f"{result.category}.npz", report_data(loaded, result, device)
            )
            bar.update()
        write_run_data(out / DATA_DIR / "run.json", model_dir.parent / "train_log.csv")
        bar.set_postfix_str(REPORT_FILE)
        build_report(out)
        bar.update()


def _with_test_images(root: Path, categories: Sequence[str]) -> list[str]:
    """The categories that have test images; the others are skipped with a warning."""
    found = [c for c in categories if any((root / c / "test").glob("*/*"))]
    for category in sorted(set(categories) - set(found)):
        log.warning("skipping category %s: no test images under %s", category, root / category)
    if not found:
        raise UserError(f"no test images under {root}: expected ROOT/<category>/test/<type>/")
    return found


def run_identity(
    loaded: LoadedDetector, model_dir: Path, root: Path, results: Sequence[CategoryScores]
) -> dict[str, Any]:
    """What was evaluated: model and data identity, versions, training time."""
    training = loaded.metadata["training"]
    versions = dict(loaded.metadata.get("versions", {}))
    for package in ("numpy", "scikit-learn", "matplotlib", "timm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "model_path": str(model_dir),
        "model_sha256": loaded.metadata.get("tensors_sha256"),
        "train_files_hash": training.get("train_files_hash"),
        "test_files_hash": file_list_hash([s for r in results for s in r.samples], root),
        "epochs_trained": training.get("epochs_trained"),
        "input_shapes": loaded.metadata.get("preprocessing", {}).get("input_shapes"),
        "pretrained_recipe": training.get("pretrained_recipe"),
        "auto_selection": training.get("auto_selection"),
        "training_seconds": training.get("seconds"),
        "versions": versions,
    }


def report_data(
    loaded: LoadedDetector, result: CategoryScores, device: torch.device
) -> CategoryReportData:
    """Embeddings of (a spread subset of) the training good images and of the test images, and
    the gallery's thumbnails, maps, masks and nearest training images."""
    chosen = [result.train[i] for i in spread_subset(len(result.train), MAX_TRAIN_POINTS)]
    # for the figures only: unreadable files were counted when the model was trained
    size = loaded.detector.input_shape(result.category)
    train = decode_images(chosen, size, max_bad_fraction=1.0)
    h_train = loaded.detector.embed(train.pixels, result.category, device=device)
    primary = loaded.detector.settings.primary
    gallery = select_gallery(
        result.detection.scores[primary].numpy(),
        np.array([s.label for s in result.samples]),
        [s.defect_type for s in result.samples],
    )
    h_test = result.detection.h
    if h_test is None:  # a detector that returned no embeddings
        h_test = loaded.detector.embed(result.pixels, result.category, device=device)
    return collect_category(
        paths=[display_path(s.path) for s in result.samples],
        pixels=result.pixels,
        masks=torch.from_numpy(result.masks),
        maps=result.detection.maps,
        h_test=h_test,
        train_pixels=train.pixels,
        h_train=h_train,
        gallery=gallery,
    )


def write_scores_csv(path: Path, loaded: LoadedDetector, evaluation: EvaluationResult) -> None:
    """One row per test image: labels, one column per scorer, the primary scorer's verdict."""
    _write_rows(path, loaded, [(r, r.samples, r.detection.scores) for r in evaluation.categories])


def write_val_scores_csv(path: Path, loaded: LoadedDetector, evaluation: EvaluationResult) -> None:
    """The same columns for the held-out good training images (calibration set, never fitted).

    They are what a setting may be chosen on without looking at the test set (``benchmarks/
    quality.py``'s selection protocol), and the control of ``image.auroc_vs_val_good``.
    """
    rows = [
        (r, r.val_samples, r.val_scores) for r in evaluation.categories if r.val_scores is not None
    ]
    _write_rows(path, loaded, rows)


def _write_rows(
    path: Path,
    loaded: LoadedDetector,
    groups: Sequence[tuple[CategoryScores, Sequence[Sample], Mapping[str, torch.Tensor]]],
) -> None:
    names = scorer_names(loaded.detector.settings)
    primary = names[0]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "defect_type", "label", *names, "prediction"])
        for result, samples, table in groups:
            threshold = loaded.detector.threshold(result.category, primary)
            for i, sample in enumerate(samples):
                scores = [float(table[n][i]) for n in names]
                writer.writerow(
                    [display_path(sample.path), sample.category, sample.defect_type, sample.label]
                    + [f"{v:.6g}" for v in scores]
                    + [int(scores[0] >= threshold)]
                )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_tables(metrics: dict[str, Any]) -> str:
    """The write-up's two tables (per-category performance, method comparison), AUROC added."""
    primary = metrics["primary"]
    lines = [
        f"Per-category performance ({primary} scorer, threshold from good training images only)"
    ]
    header = f"{'category':<14}{'AUROC':>7}{'95% CI':>15}{'vsVal†':>8}{'pixAUROC':>10}"
    header += f"{'AUPRO':>7}{'F1':>7}"
    header += f"{'prec':>7}{'recall':>7}{'acc':>7}{'trivF1':>8}{'TPR1%‡':>8}{'F1max*':>8}"
    lines += [header, "-" * len(header)]
    for category, m in metrics["scorers"][primary]["categories"].items():
        image, pixel = m["image"], m["pixel"]
        ci = image["auroc_ci95"]
        ci_text = f"[{ci[0]:.3f},{ci[1]:.3f}]" if ci else "-"
        lines.append(
            f"{category:<14}{_fmt(image['auroc']):>7}{ci_text:>15}"
            f"{_fmt(image.get('auroc_vs_val_good')):>8}{_fmt(pixel['auroc']):>10}"
            f"{_fmt(pixel['aupro']):>7}{_fmt(image['f1']):>7}{_fmt(image['precision']):>7}"
            f"{_fmt(image['recall']):>7}{_fmt(image['accuracy']):>7}{_fmt(image['trivial_f1']):>8}"
            f"{_fmt((image['tpr_at_fpr'] or {}).get('0.01')):>8}{_fmt(image['f1_max']):>8}"
        )
    lines += [
        "† vsVal: AUROC of the test defects against the good training images' calibration scores",
        "  (cross-fitted or held out: the control free of any shift between training and test)",
        "‡ TPR1%: recall at the test's own 1% false-alarm point (the ranking's low end)",
        "* F1max: best F1 over thresholds fitted on the test set (an upper bound, not deployable)",
        "",
    ]
    lines.append("Method comparison (mean over categories)")
    header = f"{'scorer':<16}{'AUROC':>7}{'pixAUROC':>10}{'AUPRO':>7}"
    header += f"{'F1':>7}{'prec':>7}{'recall':>7}{'acc':>7}"
    lines += [header, "-" * len(header)]
    for name, entry in metrics["scorers"].items():
        images = [m["image"] for m in entry["categories"].values()]
        mean = entry["mean"]
        lines.append(
            f"{name:<16}{_fmt(mean['image_auroc']):>7}{_fmt(mean['pixel_auroc']):>10}"
            f"{_fmt(mean['aupro']):>7}"
            f"{_fmt(mean['f1']):>7}"
            + "".join(
                f"{_fmt(_mean([i[k] for i in images])):>7}"
                for k in ("precision", "recall", "accuracy")
            )
        )
    return "\n".join(lines)
