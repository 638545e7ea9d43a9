import json
import math

import numpy as np
import pytest
from scipy import stats

from simclr_ad.calibration import (
    Calibration,
    calibrate_threshold,
    conformal_rank,
    highest_good,
    normalize_scores,
)


def mean_false_alarm_rate(n: int, alpha: float, draws: int, seed: int) -> float:
    """Average over validation sets of N(0,1) scores of P(fresh N(0,1) score >= threshold)."""
    rng = np.random.default_rng(seed)
    thresholds = [
        calibrate_threshold(rng.normal(size=n), target_fpr=alpha).threshold for _ in range(draws)
    ]
    return float(np.mean(stats.norm.sf(thresholds)))  # exact rate of each threshold


def test_conformal_takes_the_expected_order_statistic() -> None:
    scores = np.random.default_rng(0).uniform(size=199)
    calibration = calibrate_threshold(scores, target_fpr=0.01)
    assert calibration.method == "conformal"
    assert conformal_rank(199, 0.01) == 198  # ceil(200 * 0.99)
    assert calibration.threshold == np.sort(scores)[197]
    assert calibration.n == 199


def test_highest_good_lists_the_top_scores_and_the_threshold_without_them() -> None:
    # 200 uniform good scores and two far above them (a part that was not good, say)
    scores = np.concatenate([np.random.default_rng(1).uniform(size=200), [7.0, 5.0]])
    paths = [f"good/{i:03d}.png" for i in range(scores.size)]
    listed = highest_good(scores, paths, target_fpr=0.01, count=3)
    assert [g.path for g in listed] == [
        "good/200.png",
        "good/201.png",
        f"good/{scores[:200].argmax():03d}.png",
    ]
    assert [g.score for g in listed] == sorted(scores, reverse=True)[:3]
    assert calibrate_threshold(scores, 0.01).threshold == 5.0  # the second highest of 202
    # without 7.0: the conformal rank of the 201 left; without both, of the 200 uniform ones
    assert listed[0].threshold_without == calibrate_threshold(scores[scores != 7.0]).threshold
    assert listed[1].threshold_without == calibrate_threshold(scores[:200]).threshold < 1.0
    assert listed[2].threshold_without == calibrate_threshold(np.sort(scores[:200])[:-1]).threshold


def test_highest_good_ends_without_a_threshold_and_needs_a_path_each() -> None:
    listed = highest_good([3.0, 1.0], ["a.png", "b.png"], target_fpr=0.01)
    assert [(g.path, g.threshold_without) for g in listed] == [("a.png", 1.5), ("b.png", None)]
    with pytest.raises(ValueError, match="2 scores but 1 paths"):
        highest_good([3.0, 1.0], ["a.png"], target_fpr=0.01)


@pytest.mark.parametrize(
    ("n", "alpha", "k"), [(99, 0.01, 99), (98, 0.01, 99), (19, 0.05, 19), (9, 0.1, 9)]
)
def test_conformal_rank_is_exact_at_the_boundary(n: int, alpha: float, k: int) -> None:
    assert conformal_rank(n, alpha) == k


def test_conformal_needs_enough_scores() -> None:
    scores = np.arange(100.0)
    assert calibrate_threshold(scores[:99]).method == "conformal"
    assert calibrate_threshold(scores[:99]).threshold == 98.0  # the maximum, k = n = 99
    assert calibrate_threshold(scores[:98]).method == "gaussian-tail"


def test_conformal_false_alarm_rate_matches_target() -> None:
    # k = 297 of 299: the exact marginal rate is (300 - 297) / 300 = 0.01
    rate = mean_false_alarm_rate(n=299, alpha=0.01, draws=3000, seed=1)
    assert rate == pytest.approx(0.01, abs=1e-3)


def test_gaussian_tail_with_few_scores() -> None:
    scores = np.random.default_rng(2).normal(size=10)
    calibration = calibrate_threshold(scores, target_fpr=0.01)
    assert calibration.method == "gaussian-tail"
    assert calibration.threshold >= scores.max()
    t = stats.t.ppf(0.99, df=9)
    expected = scores.mean() + t * scores.std(ddof=1) * math.sqrt(1.1)
    assert calibration.threshold == pytest.approx(max(expected, scores.max()))
    assert (calibration.mean, calibration.std) == pytest.approx((scores.mean(), scores.std(ddof=1)))


def test_gaussian_tail_false_alarm_rate_near_target() -> None:
    # a prediction bound: exactly α for normal scores, a little less after the max() floor
    rate = mean_false_alarm_rate(n=10, alpha=0.01, draws=3000, seed=3)
    assert 0.005 < rate <= 0.02


def test_gaussian_tail_never_below_max() -> None:
    scores = np.r_[np.zeros(9), 100.0]  # one outlier: the bound (70.8) falls below it
    calibration = calibrate_threshold(scores, target_fpr=0.05)
    assert calibration.method == "gaussian-tail"
    assert calibration.threshold >= 100.0


def test_single_score() -> None:
    calibration = calibrate_threshold([2.0])
    assert (calibration.method, calibration.threshold, calibration.std) == ("single-score", 3.0, 0)


@pytest.mark.parametrize(
    ("scores", "alpha", "message"),
    [([], 0.01, "without"), ([1.0, float("nan")], 0.01, "NaN"), ([1.0, 2.0], 1.0, "target")],
)
def test_rejects_bad_input(scores: list[float], alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate_threshold(scores, target_fpr=alpha)


def test_normalisation_puts_the_threshold_at_one() -> None:
    calibration = calibrate_threshold(np.random.default_rng(4).uniform(1, 2, size=20))
    scores = np.array([[0.0, calibration.threshold], [2 * calibration.threshold, 1.0]])
    normalised = normalize_scores(scores, calibration.threshold)
    assert normalised.shape == (2, 2)
    assert normalised[0, 1] == pytest.approx(1.0)
    assert normalised[1, 0] == pytest.approx(2.0)
    assert calibration.is_anomalous(scores).tolist() == [[False, True], [True, False]]


def test_normalisation_needs_a_positive_threshold() -> None:
    zero = Calibration(0.0, "gaussian-tail", n=2, target_fpr=0.01, mean=0.0, std=0.0, max_score=0.0)
    with pytest.raises(ValueError, match="threshold"):  # calibrate_threshold floors it (> 0)
        normalize_scores([1.0], zero.threshold)


def test_dict_round_trip() -> None:
    calibration = calibrate_threshold(np.random.default_rng(5).uniform(size=12), target_fpr=0.05)
    restored = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert restored == calibration


def test_from_dict_rejects_unknown_keys_and_methods() -> None:
    values = calibrate_threshold([1.0, 2.0]).to_dict()
    with pytest.raises(ValueError, match="keys"):
        Calibration.from_dict({**values, "extra": 1})
    with pytest.raises(ValueError, match="method"):
        Calibration.from_dict({**values, "method": "magic"})
