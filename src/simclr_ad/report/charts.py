"""The charts of one category, from its ``scores.csv`` rows and stored report data (its gallery
is ``gallery``)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from simclr_ad.report.data import CategoryReportData, CategoryRows
from simclr_ad.report.figures import (
    confusion_figure,
    embedding_figure,
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
