"""The report's figures: pure functions from arrays to a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state, Agg when
saved), so they can be drawn in tests and threads and never open a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import auc, precision_recall_curve, roc_curve

GOOD_COLOUR = "#1f77b4"
DEFECT_COLOUR = "#d62728"
TRAIN_COLOUR = "#b0b0b0"
THRESHOLD_COLOUR = "#222222"
DEFECT_PALETTE = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
LEGEND_SIZE = 8  # pt: still legible when a phone shows the figure at its natural width


def _figure(width: float = 4.2, height: float = 3.4) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _both_classes(labels: NDArray[Any]) -> bool:
    return bool((labels == 0).any() and (labels == 1).any())


def roc_figure(scores: Mapping[str, ArrayLike], labels: ArrayLike, primary: str) -> Figure:
    """ROC curve of each scorer (the primary drawn bold) and the chance diagonal."""
    y = np.asarray(labels)
    fig = _figure()
    ax = fig.add_subplot()
    if _both_classes(y):
        for name, s in scores.items():
            fpr, tpr, _ = roc_curve(y, np.asarray(s))
            ax.plot(
                fpr, tpr, lw=2.2 if name == primary else 1.0, label=f"{name} ({auc(fpr, tpr):.3f})"
            )
    ax.plot([0, 1], [0, 1], ls="--", color=TRAIN_COLOUR, lw=1, label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (AUROC)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=LEGEND_SIZE, loc="lower right")
    return fig


def pr_figure(scores: Mapping[str, ArrayLike], labels: ArrayLike, primary: str) -> Figure:
    """Precision-recall curve of each scorer and the share of defective parts (chance level)."""
    y = np.asarray(labels)
    fig = _figure()
    ax = fig.add_subplot()
    if _both_classes(y):
        for name, s in scores.items():
            precision, recall, _ = precision_recall_curve(y, np.asarray(s))
            ax.plot(recall, precision, lw=2.2 if name == primary else 1.0, label=name)
    prevalence = float(y.mean()) if len(y) else 0.0
    ax.axhline(prevalence, ls="--", color=TRAIN_COLOUR, lw=1, label=f"chance ({prevalence:.2f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=LEGEND_SIZE, loc="lower left")
    return fig


def histogram_figure(
    scores: ArrayLike, labels: ArrayLike, threshold: float, scorer: str = "score"
) -> Figure:
    """Score histograms of good and defective test parts, with the calibrated threshold."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels)
    fig = _figure()
    ax = fig.add_subplot()
    finite = s[np.isfinite(s)]
    low = min(finite.min(initial=threshold), threshold)
    high = max(finite.max(initial=threshold), threshold)
    bins = np.linspace(low, high if high > low else low + 1.0, 31).tolist()
    ax.hist(s[y == 0], bins=bins, alpha=0.6, color=GOOD_COLOUR, label=f"good ({(y == 0).sum()})")
    ax.hist(
        s[y == 1], bins=bins, alpha=0.6, color=DEFECT_COLOUR, label=f"defective ({(y == 1).sum()})"
    )
    ax.axvline(
        threshold, color=THRESHOLD_COLOUR, ls="--", lw=1.5, label=f"threshold {threshold:.3g}"
    )
    ax.set(xlabel=f"{scorer} score", ylabel="test images", title="Scores: good vs defective")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images
    ax.legend(fontsize=LEGEND_SIZE)
    return fig


def confusion_figure(labels: ArrayLike, predicted: ArrayLike) -> Figure:
    """2×2 confusion matrix (rows: actual good/defective, columns: predicted), counts written in."""
    y, p = np.asarray(labels).astype(int), np.asarray(predicted).astype(int)
    counts = np.array([[np.sum((y == a) & (p == b)) for b in (0, 1)] for a in (0, 1)])
    fig = _figure(3.6, 3.2)
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for (a, b), n in np.ndenumerate(counts):
        dark = n > counts.max() / 2
        ax.text(
            b, a, str(n), ha="center", va="center", fontsize=14, color="white" if dark else "black"
        )
    names = ["good", "defective"]
    ax.set_xticks([0, 1], labels=["passed", "flagged"])
    ax.set_yticks([0, 1], labels=names)
    ax.set(xlabel="verdict at the calibrated threshold", ylabel="actual", title="Confusion matrix")
    return fig


def embedding_figure(points: ArrayLike, groups: Sequence[str], title: str) -> Figure:
    """2-D scatter of embeddings, one series per group (``train good``, ``test good``, and
    ``defect: <type>`` for each defect type), in that order."""
    xy = np.asarray(points, dtype=float)
    fig = _figure(4.6, 3.8)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(groups))
    names.sort(key=lambda g: (g != "train good", g != "test good", g))
    defect_colours = iter(DEFECT_PALETTE * (1 + len(names) // len(DEFECT_PALETTE)))
    for name in names:
        chosen = np.array([g == name for g in groups])
        if name == "train good":
            style: dict[str, Any] = {"color": TRAIN_COLOUR, "s": 10, "marker": "o"}
        elif name == "test good":
            style = {"color": GOOD_COLOUR, "s": 18, "marker": "o"}
        else:
            style = {"color": next(defect_colours), "s": 22, "marker": "^"}
        ax.scatter(xy[chosen, 0], xy[chosen, 1], label=name, alpha=0.8, linewidths=0, **style)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=LEGEND_SIZE, markerscale=1.2, loc="best")
    return fig


def loss_figure(epochs: ArrayLike, losses: ArrayLike) -> Figure:
    """The SimCLR training loss per epoch."""
    fig = _figure(4.6, 3.0)
    ax = fig.add_subplot()
    ax.plot(np.asarray(epochs), np.asarray(losses), marker="o", ms=3, color=GOOD_COLOUR)
    ax.set(xlabel="epoch", ylabel="NT-Xent loss", title="Training loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
