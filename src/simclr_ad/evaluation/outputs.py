"""Outputs: an evaluation's files (``scores.csv``, ``val_scores.csv``, ``metrics.json``, the
report's data and ``report.html``), the terminal tables, and the set-aside that lets
``--overwrite`` fail without losing the earlier evaluation."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from simclr_ad.data.images import display_path
from simclr_ad.data.mvtec import Sample
from simclr_ad.data.store import decode_images
from simclr_ad.detector import Detector, scorer_names
from simclr_ad.errors import UserError
from simclr_ad.evaluation.record import EvaluationMetrics, mean_present
from simclr_ad.evaluation.scores import CategoryScores
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

OUTPUTS = ("metrics.json", "scores.csv", "val_scores.csv", REPORT_FILE, DATA_DIR, FIGURES_DIR)


@contextlib.contextmanager
def replacing_outputs(out: Path, overwrite: bool) -> Iterator[None]:
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


def write_outputs(
    out: Path,
    detector: Detector,
    record: EvaluationMetrics,
    results: Sequence[CategoryScores],
    *,
    train_log: Path,
    device: torch.device,
) -> None:
    """Every file of an evaluation, the report last (it reads the others)."""
    write_scores_csv(out / "scores.csv", detector, results)
    write_val_scores_csv(out / "val_scores.csv", detector, results)
    (out / "metrics.json").write_text(record.to_json())
    write_report(out, detector, results, train_log=train_log, device=device)


def write_scores_csv(path: Path, detector: Detector, results: Sequence[CategoryScores]) -> None:
    """One row per test image: labels, one column per scorer, the primary scorer's verdict."""
    _write_rows(path, detector, [(r, r.samples, r.detection.scores) for r in results])


def write_val_scores_csv(path: Path, detector: Detector, results: Sequence[CategoryScores]) -> None:
    """The same columns for the good training images that set the thresholds (cross-fitted or
    held out: never scored by a detector fitted on them).

    They are what a setting may be chosen on without looking at the test set (``benchmarks/
    quality.py``'s selection protocol), and the control of ``image.auroc_vs_val_good``.
    """
    rows = [(r, r.val_samples, r.val_scores) for r in results if r.val_scores is not None]
    _write_rows(path, detector, rows)


def _write_rows(
    path: Path,
    detector: Detector,
    groups: Sequence[tuple[CategoryScores, Sequence[Sample], Mapping[str, torch.Tensor]]],
) -> None:
    names = scorer_names(detector.settings)
    primary = names[0]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "defect_type", "label", *names, "prediction"])
        for result, samples, table in groups:
            threshold = detector.threshold(result.category, primary)
            for i, sample in enumerate(samples):
                scores = [float(table[n][i]) for n in names]
                writer.writerow(
                    [display_path(sample.path), sample.category, sample.defect_type, sample.label]
                    + [f"{v:.6g}" for v in scores]
                    + [int(scores[0] >= threshold)]
                )


def write_report(
    out: Path,
    detector: Detector,
    results: Sequence[CategoryScores],
    *,
    train_log: Path,
    device: torch.device,
) -> None:
    """The report's stored data (``report_data/``, one step per category) and ``report.html``."""
    with progress_bar(desc="report", total=len(results) + 1, unit="step") as bar:
        for result in results:
            bar.set_postfix_str(result.category)
            save_category(
                out / DATA_DIR / f"{result.category}.npz", report_data(detector, result, device)
            )
            bar.update()
        write_run_data(out / DATA_DIR / "run.json", train_log)
        bar.set_postfix_str(REPORT_FILE)
        build_report(out)
        bar.update()


def report_data(
    detector: Detector, result: CategoryScores, device: torch.device
) -> CategoryReportData:
    """Embeddings of (a spread subset of) the training good images and of the test images, and
    the gallery's thumbnails, maps, masks and nearest training images."""
    chosen = [result.train[i] for i in spread_subset(len(result.train), MAX_TRAIN_POINTS)]
    # for the figures only: unreadable files were counted when the model was trained
    size = detector.input_shape(result.category)
    train = decode_images(chosen, size, max_bad_fraction=1.0)
    h_train = detector.embed(train.pixels, result.category, device=device)
    gallery = select_gallery(
        result.detection.scores[detector.settings.primary].numpy(),
        result.labels,
        [s.defect_type for s in result.samples],
    )
    h_test = result.detection.h
    if h_test is None:  # a detector that returned no embeddings
        h_test = detector.embed(result.pixels, result.category, device=device)
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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_tables(metrics: Mapping[str, Any]) -> str:
    """The write-up's two tables (per-category performance, method comparison), AUROC added,
    from ``metrics.json``'s content (``EvaluationMetrics.to_dict()``)."""
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
                f"{_fmt(mean_present([i[k] for i in images])):>7}"
                for k in ("precision", "recall", "accuracy")
            )
        )
    return "\n".join(lines)
