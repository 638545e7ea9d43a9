"""Detection metrics: pure functions over arrays of scores, labels, anomaly maps and masks.

Conventions: ``scores`` are higher for more anomalous inputs; ``labels`` are 1 for a defective
part and 0 for a good one; anomaly ``maps`` and ground-truth ``masks`` are N×H×W. Inputs may be
anything array-like (lists, numpy arrays, CPU tensors). A metric that needs both classes is
``None`` (never NaN) when one of them is missing, so reports can say "not defined".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, stats
from sklearn.metrics import (
    average_precision_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

TPR_AT_FPR_TARGETS: tuple[float, ...] = (0.01, 0.05)
"""False-positive rates at which ``image_metrics`` reports the true-positive rate."""

_BOOTSTRAP_CHUNK_VALUES = 2_000_000  # resampled scores held in memory at once
_PER_IMAGE_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_PER_IMAGE_8_CONNECTIVITY[1] = True  # 8-neighbours within an image, none across images


class ConfidenceInterval(NamedTuple):
    """A two-sided interval; a tuple ``(low, high)``."""

    low: float
    high: float


@dataclass(frozen=True)
class ImageMetrics:
    """Image-level detection quality on one test set.

    ``f1``, ``precision``, ``recall`` and ``accuracy`` flag a part as defective when
    ``score >= threshold`` (a threshold calibrated on good images only). ``f1_max`` is the
    best F1 over every threshold, i.e. a threshold fitted on this test set: an optimistic bound,
    not an operating point. ``trivial_f1`` is the F1 of flagging every part, ``2p / (1 + p)``
    with ``p`` the share of defective parts: the floor any F1 should be compared with.
    ``tpr_at_fpr`` maps ``"0.01"``/``"0.05"`` to the highest true-positive rate reachable with
    a false-positive rate at most that. AUROC, its bootstrap 95% interval, average precision
    and ``tpr_at_fpr`` are None when only one class is present.
    """

    auroc: float | None
    auroc_ci95: ConfidenceInterval | None
    ap: float | None
    f1: float
    precision: float
    recall: float
    accuracy: float
    threshold: float
    f1_max: float
    trivial_f1: float
    tpr_at_fpr: dict[str, float] | None
    n_good: int
    n_defect: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the interval becomes ``[low, high]``)."""
        values = dataclasses.asdict(self)
        values["auroc_ci95"] = None if self.auroc_ci95 is None else list(self.auroc_ci95)
        return values


@dataclass(frozen=True)
class DefectAUROC:
    """AUROC of one defect type's images against all good images, and how many there were."""

    auroc: float | None
    n: int


def _scores_and_labels(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Validated 1-D float scores (N,) and 0/1 labels (N,)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of one length, got {s.shape}, {y.shape}")
    if s.size == 0:
        raise ValueError("scores and labels are empty")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (good) or 1 (defective), got {np.unique(y)}")
    return s, y.astype(np.int8)


def image_metrics(
    scores: ArrayLike, labels: ArrayLike, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> ImageMetrics:
    """All image-level metrics of one test set.

    Args:
        scores: anomaly scores (N,), higher = more anomalous.
        labels: 1 = defective, 0 = good (N,).
        threshold: a part is flagged defective when its score is >= this.
        n_boot: bootstrap resamples for the AUROC interval.
        seed: seed of the bootstrap.
    """
    s, y = _scores_and_labels(scores, labels)
    flagged = (s >= threshold).astype(np.int8)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, flagged, average="binary", pos_label=1, zero_division=0
    )
    n_defect = int(y.sum())
    both = 0 < n_defect < y.size
    return ImageMetrics(
        auroc=float(roc_auc_score(y, s)) if both else None,
        auroc_ci95=bootstrap_auroc_ci(s, y, n_boot=n_boot, seed=seed) if both else None,
        ap=float(average_precision_score(y, s)) if both else None,
        f1=float(f1),
        precision=float(precision),
        recall=float(recall),
        accuracy=float(np.mean(flagged == y)),
        threshold=float(threshold),
        f1_max=max_f1(s, y),
        trivial_f1=trivial_f1(y),
        tpr_at_fpr=tpr_at_fpr(s, y) if both else None,
        n_good=int(y.size - n_defect),
        n_defect=n_defect,
    )


def max_f1(scores: ArrayLike, labels: ArrayLike) -> float:
    """Best F1 over every threshold on these scores (fitted on this test set: optimistic).

    With TP and FP counted at or above a threshold, F1 = 2·TP / (TP + FP + n_defect); it is 0
    when there is no defective part.

    Args:
        scores: anomaly scores (N,).
        labels: 1 = defective, 0 = good (N,).
    """
    s, y = _scores_and_labels(scores, labels)
    n_defect = int(y.sum())
    if n_defect == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    flagged = np.arange(1, s.size + 1)
    last_of_tie = np.r_[s[order][1:] != s[order][:-1], True]  # thresholds between distinct scores
    f1 = 2 * tp[last_of_tie] / (flagged[last_of_tie] + n_defect)
    return float(f1.max())


def trivial_f1(labels: ArrayLike) -> float:
    """F1 of flagging every part as defective: 2p / (1 + p), p = share of defective parts.

    Args:
        labels: 1 = defective, 0 = good (N,).
    """
    p = float(np.mean(np.asarray(labels) == 1))
    return 2 * p / (1 + p)


def tpr_at_fpr(
    scores: ArrayLike, labels: ArrayLike, fpr_targets: tuple[float, ...] = TPR_AT_FPR_TARGETS
) -> dict[str, float]:
    """Highest TPR among the ROC points whose FPR is at most each target.

    Args:
        scores: anomaly scores (N,), both classes present.
        labels: 1 = defective, 0 = good (N,).
        fpr_targets: false-positive rates; keys are their ``str`` (``"0.01"``).
    """
    s, y = _scores_and_labels(scores, labels)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)  # FPR ascending, starts at 0
    return {str(target): float(tpr[fpr <= target].max()) for target in fpr_targets}


def bootstrap_auroc_ci(
    scores: ArrayLike, labels: ArrayLike, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> ConfidenceInterval:
    """Percentile interval of the AUROC over stratified bootstrap resamples.

    Good and defective scores are resampled separately (each resample keeps both class sizes),
    so every resample has an AUROC.

    Args:
        scores: anomaly scores (N,), both classes present.
        labels: 1 = defective, 0 = good (N,).
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: coverage of the interval, in (0, 1).
    """
    s, y = _scores_and_labels(scores, labels)
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("the AUROC interval needs both good and defective scores")
    aurocs = [_rank_aurocs(s[pos], s[neg]) for pos, neg in _resamples(y, n_boot, seed, level)]
    return _percentile_interval(np.concatenate(aurocs), level)


def paired_auroc_difference(
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    labels: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, ConfidenceInterval]:
    """AUROC(a) - AUROC(b) of two detectors on the same images, with a paired bootstrap interval.

    Each resample draws the same good and the same defective images for both detectors
    (stratified, as :func:`bootstrap_auroc_ci`), so what the images share cancels: the interval
    of the difference is much narrower than the two AUROC intervals side by side. An interval
    above 0 says that ``a`` ranks these parts better than ``b`` beyond resampling noise.

    Args:
        scores_a: scores of detector a (N,).
        scores_b: scores of detector b for the same N images, in the same order.
        labels: 1 = defective, 0 = good (N,), both classes present.
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: coverage of the interval, in (0, 1).
    """
    if np.shape(scores_a) != np.shape(scores_b):
        shapes = f"{np.shape(scores_a)} and {np.shape(scores_b)}"
        raise ValueError(f"need the scores of the same images, got {shapes}")
    a, y = _scores_and_labels(scores_a, labels)
    b, _ = _scores_and_labels(scores_b, labels)
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("the AUROC difference needs both good and defective scores")
    deltas = [
        _rank_aurocs(a[pos], a[neg]) - _rank_aurocs(b[pos], b[neg])
        for pos, neg in _resamples(y, n_boot, seed, level)
    ]
    difference = float(roc_auc_score(y, a) - roc_auc_score(y, b))
    return difference, _percentile_interval(np.concatenate(deltas), level)


def _resamples(
    labels: NDArray[np.int8], n_boot: int, seed: int, level: float
) -> Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """Stratified bootstrap resamples as index arrays (n×P defective, n×Q good), in chunks of
    bounded memory; every resample keeps both class sizes."""
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // labels.size)
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        yield (
            positives[rng.integers(0, positives.size, size=(n, positives.size))],
            negatives[rng.integers(0, negatives.size, size=(n, negatives.size))],
        )


def _percentile_interval(values: NDArray[np.float64], level: float) -> ConfidenceInterval:
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return ConfidenceInterval(float(low), float(high))


def _rank_aurocs(
    positives: NDArray[np.float64], negatives: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Row-wise AUROC of n×P defective against n×Q good scores (Mann-Whitney, average ranks)."""
    P, Q = positives.shape[1], negatives.shape[1]
    ranks = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    return (ranks[:, :P].sum(axis=1) - P * (P + 1) / 2) / (P * Q)


def per_defect_auroc(
    scores: ArrayLike, labels: ArrayLike, defect_types: ArrayLike
) -> dict[str, DefectAUROC]:
    """AUROC of each defect type's images against all good images, by type name.

    Args:
        scores: anomaly scores (N,).
        labels: 1 = defective, 0 = good (N,).
        defect_types: defect type of each image (N,); ignored for good images.
    """
    s, y = _scores_and_labels(scores, labels)
    types = np.asarray(defect_types).astype(str)
    if types.shape != s.shape:
        raise ValueError(f"defect_types must have shape {s.shape}, got {types.shape}")
    good = y == 0
    result = {}
    for name in sorted(set(types[y == 1])):
        of_type = (types == name) & (y == 1)
        subset = good | of_type
        auroc = float(roc_auc_score(y[subset], s[subset])) if good.any() else None
        result[name] = DefectAUROC(auroc=auroc, n=int(of_type.sum()))
    return result


def _maps_and_masks(maps: ArrayLike, masks: ArrayLike) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Float anomaly maps and boolean masks of one shape (N×H×W)."""
    m = np.asarray(maps)
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    gt = np.asarray(masks).astype(bool, copy=False)
    if m.ndim != 3 or gt.shape != m.shape:
        raise ValueError(f"maps and masks must both be N×H×W, got {m.shape}, {gt.shape}")
    if np.isnan(m).any():
        raise ValueError("anomaly maps contain NaN")
    return m, gt


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float | None:
    """Pixel-level AUROC over all pixels of all images, exact (no subsampling).

    Computed as the probability that a defect pixel outscores a good pixel, ties counting half
    (equal to ``roc_auc_score`` on the flattened arrays, without building the ROC curve of
    millions of pixels).

    Args:
        maps: anomaly maps (N×H×W), higher = more anomalous.
        masks: ground truth (N×H×W), true/nonzero on defect pixels.

    Returns:
        The AUROC, or None when the masks have no defect pixel or no good pixel.
    """
    m, gt = _maps_and_masks(maps, masks)
    positives, negatives = np.sort(m[gt]), np.sort(m[~gt])
    if positives.size == 0 or negatives.size == 0:
        return None
    below = np.searchsorted(negatives, positives, side="left").sum(dtype=np.int64)
    below_or_tied = np.searchsorted(negatives, positives, side="right").sum(dtype=np.int64)
    return float((below + below_or_tied) / 2 / (positives.size * negatives.size))


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = 0.3) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD).

    Following Bergmann et al. (IJCV 2021): the regions are the 8-connected components of each
    mask; at a threshold t, PRO(t) is the mean over all regions of the fraction of the region's
    pixels scoring >= t, and FPR(t) is the fraction of all good pixels (every image) scoring
    >= t. The curve through the points of every distinct threshold is integrated over FPR in
    [0, fpr_limit] (trapezoids, interpolated at the limit) and divided by ``fpr_limit``: 1.0 for
    a perfect map, about ``fpr_limit / 2`` for a random one. Exact: no threshold grid.

    Args:
        maps: anomaly maps (N×H×W), higher = more anomalous.
        masks: ground truth (N×H×W), true/nonzero on defect pixels.
        fpr_limit: upper end of the FPR integration range, in (0, 1].

    Returns:
        The normalised area, or None when there is no defect region or no good pixel.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    m, gt = _maps_and_masks(maps, masks)
    regions, n_regions = ndimage.label(gt, structure=_PER_IMAGE_8_CONNECTIVITY)
    if n_regions == 0 or gt.all():
        return None
    region_of_pixel = regions[gt] - 1  # region index of each defect pixel
    region_size = np.bincount(region_of_pixel, minlength=n_regions)
    weight = 1.0 / (n_regions * region_size[region_of_pixel])  # PRO = weighted share flagged
    fpr, pro = _pro_curve(np.sort(m[~gt]), m[gt], weight, fpr_limit)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def _pro_curve(
    good_sorted: NDArray[Any],
    defect_scores: NDArray[Any],
    defect_weights: NDArray[np.float64],
    fpr_limit: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points (FPR, PRO) of the exact curve, thresholds descending, until FPR passes the limit.

    Between two consecutive distinct good scores the FPR is constant, so every point of the
    curve lies on a vertical step or on the segment from just above a good score v,
    (FPR(>v), PRO(>v)), to v itself, (FPR(>=v), PRO(>=v)); those two points per v suffice.
    """
    n_good = good_sorted.size
    first = np.flatnonzero(np.r_[True, good_sorted[1:] != good_sorted[:-1]])
    values = good_sorted[first]  # distinct good scores, ascending
    fpr_at_least = (n_good - first) / n_good
    fpr_above = np.r_[fpr_at_least[1:], 0.0]
    keep = fpr_above < fpr_limit
    values, fpr_at_least, fpr_above = values[keep], fpr_at_least[keep], fpr_above[keep]

    order = np.argsort(defect_scores)
    defect_sorted = defect_scores[order]
    weight_below = np.r_[0.0, np.cumsum(defect_weights[order])]  # weight of the k lowest
    total = weight_below[-1]
    pro_at_least = total - weight_below[np.searchsorted(defect_sorted, values, side="left")]
    pro_above = total - weight_below[np.searchsorted(defect_sorted, values, side="right")]

    fpr = np.r_[0.0, np.stack([fpr_above, fpr_at_least], axis=1)[::-1].ravel()]
    pro = np.r_[0.0, np.stack([pro_above, pro_at_least], axis=1)[::-1].ravel()]
    return fpr, pro


def _area_up_to(x: NDArray[np.float64], y: NDArray[np.float64], limit: float) -> float:
    """Trapezoid area under the polyline (x nondecreasing) from x[0] to ``limit``."""
    beyond = np.flatnonzero(x > limit)
    if beyond.size == 0:
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
    i = beyond[0]  # x[i-1] <= limit < x[i]
    y_limit = y[i - 1] + (y[i] - y[i - 1]) * (limit - x[i - 1]) / (x[i] - x[i - 1])
    x_in, y_in = np.r_[x[:i], limit], np.r_[y[:i], y_limit]
    return float(np.sum(np.diff(x_in) * (y_in[1:] + y_in[:-1]) / 2))
