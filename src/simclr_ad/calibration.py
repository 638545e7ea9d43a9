"""Decision thresholds from held-out good images, for a target false-alarm rate α.

A detector flags an image when its anomaly score is >= a threshold. The threshold is chosen
from the scores of good images the detector was not fitted on (never from the test set, whose
defects would leak into it), so that a new good image is flagged with probability about α
(``target_fpr``, default 1%). Which rule applies depends on how many such images there are:

**Conformal quantile** (n >= 1/α − 1, e.g. 99 images for α = 1%). The threshold is the k-th
smallest validation score with k = ⌈(n + 1)(1 − α)⌉. If the new image and the validation
images are exchangeable (drawn alike, e.g. good parts from the same line) and scores have no
ties, a new good image scores at or above it with probability (n + 1 − k)/(n + 1) <= α. No
assumption about the score distribution is needed. The guarantee is on average over the
choice of validation images: one particular set gives a false-alarm rate that scatters around
α, less so the larger n is. With fewer images k would exceed n and the threshold would be +∞,
which flags nothing.

**Gaussian tail** (2 <= n < 1/α − 1, the usual 5–32 held-out images). The scores are modelled
as normal with the sample mean m and unbiased standard deviation s, and the threshold is the
one-sided Student-t prediction bound m + t(1 − α; n − 1)·s·√(1 + 1/n), which accounts for
estimating m and s from few images; it is never below the largest validation score. The
false-alarm rate is exactly α if the scores are normal. Anomaly scores (distances) are often
right-skewed, with a longer upper tail than a normal: then the real rate can exceed α. Hold
out more good images to move to the conformal rule.

**Single score** (n = 1): 1.5 times that score (the score plus half its magnitude), a
placeholder without any guarantee. With no score at all there is no threshold.

**Where the good scores come from** (``source``). ``held-out``: a split of the training good
images that the detector was never fitted on (the guarantee above holds as stated). ``cross-fitted``
(the default, ``detector.fit_detector``): every training good image is scored by a detector that
never saw it, so all n good images calibrate while the final detector is fitted on all of them:
leave-one-image-out for the patch scorer (the final bank less the image's own patches; ``folds``
= n), K folds for the global scorers. The scores are then not exactly exchangeable with a new
part's score (each image meets a slightly different bank); the jackknife+ / cross-conformal bounds
of Barber et al. (2021, "Predictive inference with the jackknife+") still cap the false-alarm rate
at 2α (+ O(1/n) for K folds) in the worst case, and in practice it sits near α.

**Floor.** Whatever the rule, the threshold is at least THRESHOLD_FLOOR times the mean score
magnitude (or 1e-6 absolute): good scores that are all 0 (near-identical images) would otherwise
give a threshold of 0 (a warning says so).

``normalize_scores`` divides scores by the threshold so 1.0 is the decision boundary.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

log = logging.getLogger(__name__)

METHODS = ("conformal", "gaussian-tail", "single-score")
# The least threshold, relative to the good scores' mean magnitude (absolute below 1): scores
# that are all (nearly) 0, e.g. near-identical good images, would otherwise give a threshold of
# 0, which flags every image and cannot normalise scores.
THRESHOLD_FLOOR = 1e-6
SOURCES = ("held-out", "cross-fitted")
HIGHEST_GOOD = 5  # good images listed as the ones behind a threshold (``highest_good``)


@dataclass(frozen=True)
class Calibration:
    """A fitted decision threshold and the statistics of the good scores it came from.

    Attributes:
        threshold: scores >= this are anomalous.
        method: ``"conformal"``, ``"gaussian-tail"`` or ``"single-score"`` (module docstring).
        n: number of validation scores.
        target_fpr: the false-alarm rate α aimed at.
        mean: mean of the validation scores.
        std: unbiased standard deviation of the validation scores (0 when n = 1).
        max_score: largest validation score.
        source: where the scores came from: ``"held-out"`` or ``"cross-fitted"``.
        folds: the number of folds of cross-fitted scores (0 for held-out ones).
    """

    threshold: float
    method: str
    n: int
    target_fpr: float
    mean: float
    std: float
    max_score: float
    source: str = "held-out"
    folds: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; valid: {METHODS}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown calibration source {self.source!r}; valid: {SOURCES}")

    @property
    def promise(self) -> str:
        """In words: the false-alarm rate this threshold promises and what it rests on."""
        rule = {
            "conformal": "conformal quantile",
            "gaussian-tail": "Student-t prediction bound",
            "single-score": "1.5 × the only score (no guarantee)",
        }[self.method]
        source = scores_kind(self.source, self.folds, self.n)
        return (
            f"{rule} of {self.n} {source} good scores, target false-alarm rate {self.target_fpr:g}"
        )

    def is_anomalous(self, scores: ArrayLike) -> NDArray[np.bool_]:
        """Whether each score is at or above the threshold (same shape as ``scores``)."""
        return np.asarray(scores, dtype=np.float64) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Calibration:
        """Rebuild from ``to_dict()`` output; missing or unknown keys are errors (``source`` and
        ``folds`` may be missing: bundles made before cross-fitting held out their scores)."""
        names = [field.name for field in dataclasses.fields(cls)]
        optional = {"source", "folds"}
        if not set(names) - optional <= set(values) <= set(names):
            raise ValueError(f"calibration keys must be {names}, got {sorted(values)}")
        return cls(
            threshold=float(values["threshold"]),
            method=str(values["method"]),
            n=int(values["n"]),
            target_fpr=float(values["target_fpr"]),
            mean=float(values["mean"]),
            std=float(values["std"]),
            max_score=float(values["max_score"]),
            source=str(values.get("source", "held-out")),
            folds=int(values.get("folds", 0)),
        )


def conformal_rank(n: int, target_fpr: float) -> int:
    """k = ⌈(n + 1)(1 − α)⌉, the rank (1-based, ascending) of the conformal threshold.

    Larger than ``n`` when there are too few scores for the conformal rule.
    """
    return math.ceil((n + 1) * (1 - target_fpr) - 1e-9)  # tolerance: 100 * 0.99 is not 99


def scores_kind(source: str, folds: int, n: int) -> str:
    """Where n calibration scores came from, in words: ``held-out``, ``K-fold cross-fitted``, or
    ``leave-one-out`` (K folds of one image each: K >= n)."""
    if source != "cross-fitted":
        return "held-out"
    return "leave-one-out" if folds >= n else f"{folds}-fold cross-fitted"


def calibrate_threshold(
    val_scores: ArrayLike, target_fpr: float = 0.01, *, folds: int = 0
) -> Calibration:
    """Threshold for a false-alarm rate ``target_fpr`` from held-out good images' scores.

    Conformal quantile when there are enough scores (n >= 1/α − 1), else a Gaussian-tail
    prediction bound (n >= 2), else 1.5 times the single score; see the module docstring.

    Args:
        val_scores: anomaly scores (n,) of held-out good images.
        target_fpr: α, the share of good images that may be flagged, in (0, 1).
        folds: K when the scores are K-fold cross-fitted (each from a detector that never saw
            its image; K >= n: leave one out); 0 when they come from held-out images.

    Raises:
        ValueError: no scores, a non-finite score, or α outside (0, 1).
    """
    scores = np.sort(np.asarray(val_scores, dtype=np.float64).ravel())
    if scores.size == 0:
        raise ValueError("cannot calibrate a threshold without validation scores")
    if not np.isfinite(scores).all():
        raise ValueError("validation scores contain NaN or infinity")
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    method, threshold = _rule(scores, target_fpr)
    threshold = _with_floor(threshold, scores)
    return Calibration(
        threshold=threshold,
        method=method,
        n=scores.size,
        target_fpr=target_fpr,
        mean=float(scores.mean()),
        std=float(scores.std(ddof=1)) if scores.size > 1 else 0.0,
        max_score=float(scores[-1]),
        source="cross-fitted" if folds else "held-out",
        folds=folds,
    )


def _rule(scores: NDArray[np.float64], target_fpr: float) -> tuple[str, float]:
    """The method for n sorted scores and its threshold, before the floor."""
    n, k = scores.size, conformal_rank(scores.size, target_fpr)
    if k <= n:
        return "conformal", float(scores[k - 1])
    if n > 1:
        return "gaussian-tail", _gaussian_tail_bound(scores, target_fpr)
    return "single-score", float(scores[0] + 0.5 * abs(scores[0]))


def _floor(scores: NDArray[np.float64]) -> float:
    """THRESHOLD_FLOOR × max(1, mean |score|)."""
    return THRESHOLD_FLOOR * max(1.0, float(np.abs(scores).mean()))


def _with_floor(threshold: float, scores: NDArray[np.float64]) -> float:
    """``threshold`` raised to ``_floor(scores)``, with a warning when the good scores have no
    spread to speak of (the threshold then says little)."""
    floor = _floor(scores)
    spread = float(scores[-1] - scores[0])
    if scores.size > 1 and spread <= floor:
        log.warning(
            "the %d good scores are all equal (spread %.3g): near-identical good images? The "
            "threshold (%.6g) separates little; calibrate on more varied good images",
            scores.size,
            spread,
            max(threshold, floor),
        )
    if threshold >= floor:
        return threshold
    log.warning(
        "threshold %.3g raised to the floor %.3g: a threshold of 0 would flag every image",
        threshold,
        floor,
    )
    return floor


def _gaussian_tail_bound(scores: NDArray[np.float64], target_fpr: float) -> float:
    """max(scores, m + t(1 − α; n − 1)·s·√(1 + 1/n)) for scores (n,), n >= 2."""
    n = scores.size
    t = float(stats.t.ppf(1 - target_fpr, df=n - 1))
    bound = scores.mean() + t * scores.std(ddof=1) * math.sqrt(1 + 1 / n)
    return float(max(bound, scores.max()))


class GoodScore(NamedTuple):
    """One of the good images that score highest among those setting a threshold.

    Attributes:
        path: the image.
        score: its calibration score (held out, or from a detector that never saw it).
        threshold_without: the threshold calibrated again without this image and every image
            that scores higher (None when no score is left).
    """

    path: str
    score: float
    threshold_without: float | None


def highest_good(
    val_scores: ArrayLike,
    paths: Sequence[str],
    target_fpr: float,
    count: int = HIGHEST_GOOD,
) -> list[GoodScore]:
    """The ``count`` good images with the highest calibration scores, highest first.

    They are the ones that set the threshold: a part among them that is not good after all (a
    defect nobody saw, dirt, a wrong part) raises the threshold for every part, and an
    inspector who takes it out of the good images lowers it to about ``threshold_without``
    (about: the detector is fitted again without it, and the other scores move a little).
    """
    scores = np.asarray(val_scores, dtype=np.float64).ravel()
    if scores.size != len(paths):
        raise ValueError(f"{scores.size} scores but {len(paths)} paths")
    order = np.argsort(-scores, kind="stable")
    listed = []
    for rank, i in enumerate(order[:count]):
        rest = np.sort(scores[order[rank + 1 :]])
        without = max(_rule(rest, target_fpr)[1], _floor(rest)) if rest.size else None
        listed.append(GoodScore(paths[i], float(scores[i]), without))
    return listed


def normalize_scores(scores: ArrayLike, threshold: float) -> NDArray[np.float64]:
    """Scores divided by the threshold (a calibration's, or one set at prediction time), so 1.0
    is the decision boundary (same shape).

    Meant for non-negative scores (distances) and a positive threshold.

    Raises:
        ValueError: the threshold is not positive.
    """
    if not threshold > 0:
        raise ValueError(
            f"cannot normalise by a threshold <= 0 (got {threshold}); "
            "scores must be non-negative distances"
        )
    return np.asarray(scores, dtype=np.float64) / threshold
