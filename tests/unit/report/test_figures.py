"""Each figure function on hand-made inputs: the axes and series a reader relies on."""

import numpy as np
from matplotlib.figure import Figure

from simclr_ad.report.figures import (
    confusion_figure,
    embedding_figure,
    histogram_figure,
    loss_figure,
    pr_figure,
    roc_figure,
)

LABELS = np.array([0, 0, 0, 1, 1])
PERFECT = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
REVERSED = -PERFECT


def test_roc_has_one_curve_per_scorer_and_the_chance_line() -> None:
    fig = roc_figure({"patch": PERFECT, "knn_h": REVERSED}, LABELS, primary="patch")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["patch (1.000)", "knn_h (0.000)", "chance"]
    patch = ax.get_lines()[0]
    assert patch.get_linewidth() > ax.get_lines()[1].get_linewidth()  # the primary stands out
    assert list(patch.get_xdata()[-1:]) == [1.0] and list(patch.get_ydata()[-1:]) == [1.0]


def test_roc_with_one_class_draws_only_the_chance_line() -> None:
    fig = roc_figure({"patch": PERFECT}, np.zeros(5), primary="patch")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["chance"]


def test_pr_has_one_curve_per_scorer_and_prevalence_as_chance() -> None:
    fig = pr_figure({"patch": PERFECT, "knn_h": REVERSED}, LABELS, primary="patch")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["patch", "knn_h", "chance (0.40)"]
    assert list(lines[2].get_ydata()) == [0.4, 0.4]
    precision = np.asarray(lines[0].get_ydata())
    assert precision.min() >= 0.4 and precision.max() == 1.0


def test_histogram_splits_good_and_defective_and_marks_the_threshold() -> None:
    fig = histogram_figure(PERFECT, LABELS, threshold=0.5, scorer="patch")
    ax = fig.axes[0]
    good, defect = ax.containers
    assert sum(bar.get_height() for bar in good) == 3
    assert sum(bar.get_height() for bar in defect) == 2
    vlines = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.5, 0.5]]
    assert len(vlines) == 1 and vlines[0].get_linestyle() == "--"
    assert ax.get_xlabel() == "patch score"


def test_histogram_threshold_outside_the_scores_is_still_visible() -> None:
    ax = histogram_figure(PERFECT, LABELS, threshold=2.0).axes[0]
    low, high = ax.get_xlim()
    assert low <= 0.1 and high >= 2.0


def test_confusion_matrix_cells_hold_the_counts() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    predicted = np.array([0, 0, 0, 1, 1, 1, 0])  # TN 3, FP 1, TP 2, FN 1
    ax = confusion_figure(labels, predicted).axes[0]
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert cells == {(0, 0): "3", (0, 1): "1", (1, 0): "1", (1, 1): "2"}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["good", "defective"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["passed", "flagged"]


def test_embedding_scatter_has_one_series_per_group_in_reading_order() -> None:
    points = np.arange(12, dtype=float).reshape(6, 2)
    groups = ["defect: hole", "train good", "test good", "train good", "defect: crack", "test good"]
    ax = embedding_figure(points, groups, "t-SNE").axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["train good", "test good", "defect: crack", "defect: hole"]
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [2, 2, 1, 1]
    assert ax.get_title() == "t-SNE"


def test_loss_curve_plots_epochs_against_loss() -> None:
    ax = loss_figure([1, 2, 3], [4.0, 3.0, 2.5]).axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [4.0, 3.0, 2.5]


def test_counts_and_epochs_get_integer_ticks() -> None:
    few = histogram_figure(PERFECT, LABELS, threshold=0.5).axes[0]  # at most 2 images per bin
    ticks = [t for t in few.get_yticks() if few.get_ylim()[0] <= t <= few.get_ylim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    short = loss_figure([1, 2, 3], [4.0, 3.0, 2.5]).axes[0]
    epochs = [t for t in short.get_xticks() if short.get_xlim()[0] <= t <= short.get_xlim()[1]]
    assert len(epochs) >= 2 and all(float(t).is_integer() for t in epochs)
