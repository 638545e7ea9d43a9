"""The figures of one category, from its ``scores.csv`` rows, metrics and stored report data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from simclr_ad.report.data import DEFECT_LOWEST, GOOD_HIGHEST, CategoryReportData, CategoryRows
from simclr_ad.report.figures import (
    Panel,
    confusion_figure,
    embedding_figure,
    gallery_figure,
    histogram_figure,
    pr_figure,
    roc_figure,
)
from simclr_ad.report.projection import project


def _caption(text: str) -> str:
    """Matplotlib reads ``$`` as maths; names from folders are shown as they are."""
    return text.replace("$", r"\$")


def curve_figures(
    rows: CategoryRows, primary: str, threshold: float
) -> dict[str, tuple[str, Figure]]:
    """ROC, PR, score histogram and confusion matrix: ``{key: (title, figure)}``."""
    scores = rows.scores[primary]
    return {
        "roc": ("ROC curves", roc_figure(rows.scores, rows.labels, primary)),
        "pr": ("Precision-recall curves", pr_figure(rows.scores, rows.labels, primary)),
        "histogram": ("Score histogram", histogram_figure(scores, rows.labels, threshold, primary)),
        "confusion": ("Confusion matrix", confusion_figure(rows.labels, scores >= threshold)),
    }


def embedding_figures(
    rows: CategoryRows, data: CategoryReportData
) -> dict[str, tuple[str, Figure]]:
    """t-SNE and PCA of ``h``: training good, test good, and test defects by type."""
    features = np.concatenate([data.h_train, data.h_test]).astype(np.float64)
    groups = ["train good"] * len(data.h_train) + [
        "test good" if y == 0 else f"defect: {d}"
        for d, y in zip(rows.defects, rows.labels, strict=True)
    ]
    groups = [_caption(g) for g in groups]
    views = project(features)
    return {
        "tsne": ("t-SNE of h", embedding_figure(views.tsne, groups, "t-SNE of embeddings h")),
        "pca": ("PCA of h", embedding_figure(views.pca, groups, "PCA of embeddings h")),
    }


def heat_range(data: CategoryReportData, patch_threshold: float | None) -> tuple[float, float]:
    """Colour scale of the heatmaps: the typical map level (dark) to the threshold (bright)."""
    if data.maps is None or data.maps.size == 0:
        return (0.0, 1.0)
    maps = data.maps.astype(np.float64)
    low = float(np.percentile(maps, 5))
    high = patch_threshold if patch_threshold is not None else float(maps.max())
    return (low, high if high > low else low + 1e-6)


def _verdict(score: float, threshold: float, label: int) -> str:
    flagged = score >= threshold
    if flagged and label == 0:
        return "FALSE ALARM"
    if not flagged and label == 1:
        return "MISSED"
    return "flagged" if flagged else "passed"


def gallery_figures(
    rows: CategoryRows,
    data: CategoryReportData,
    primary: str,
    threshold: float,
    patch_threshold: float | None,
) -> dict[str, tuple[str, Figure]]:
    """Per defect type: image | anomaly map | ground truth. Then the highest-scoring good parts
    and the lowest-scoring defective parts: image | anomaly map | nearest good training image."""
    scores = rows.scores[primary]
    by_role: dict[str, list[list[Panel]]] = {}
    for g, (i, role) in enumerate(zip(data.gallery.index, data.gallery.role, strict=True)):
        s, y = float(scores[i]), int(rows.labels[i])
        name = _caption("/".join(Path(rows.paths[i]).parts[-2:]))
        panels = [Panel(data.thumbnails[g], f"{name}\nscore {s:.3g}: {_verdict(s, threshold, y)}")]
        if data.maps is not None:
            panels.append(Panel(data.thumbnails[g], "anomaly map", data.maps[g]))
        if str(role) in (GOOD_HIGHEST, DEFECT_LOWEST):
            panels.append(Panel(data.neighbours[g], "nearest good (train)"))
        else:
            panels.append(Panel(data.masks[g], "ground truth"))
        by_role.setdefault(str(role), []).append(panels)
    heat = heat_range(data, patch_threshold)
    titles = {GOOD_HIGHEST: "Highest-scoring good parts", DEFECT_LOWEST: "Lowest-scoring defects"}
    figures: dict[str, tuple[str, Figure]] = {}
    for role, panel_rows in sorted(by_role.items(), key=lambda kv: kv[0] in titles):
        key = "gallery_" + role.replace(":", "_")
        title = titles.get(role, role.replace("defect:", "Defect type: "))
        figures[key] = (title, gallery_figure(panel_rows, heat))
    return figures


def false_alarms(labels: NDArray[Any], scores: NDArray[Any], threshold: float) -> tuple[int, int]:
    """(good test parts flagged, good test parts) at ``threshold``."""
    good = labels == 0
    return int((scores[good] >= threshold).sum()), int(good.sum())
