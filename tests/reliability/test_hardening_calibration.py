"""Issue 16, item 8: near-identical good images give good scores that are all 0.

Before the fix the threshold was 0: every image was flagged and ``normalize_scores`` raised
``cannot normalise by a threshold <= 0`` (``predict`` crashed, the service answered 500).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from simclr_ad.calibration import THRESHOLD_FLOOR, calibrate_threshold, normalize_scores


@pytest.mark.parametrize("n", [1, 5, 30, 200])  # single score, Gaussian tail, conformal
def test_zero_spread_calibration_gets_a_positive_floor_and_a_warning(
    n: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="simclr_ad.calibration"):
        calibration = calibrate_threshold(np.zeros(n), target_fpr=0.01, folds=5)
    assert calibration.threshold == THRESHOLD_FLOOR > 0
    assert "raised to the floor" in caplog.text
    if n > 1:
        assert "good scores are all equal" in caplog.text
    normalized = normalize_scores([0.0, 0.5], calibration.threshold)  # raised ValueError before
    assert normalized[0] == 0.0 and normalized[1] > 1.0
    assert calibration.is_anomalous([0.0, 0.5]).tolist() == [False, True]


def test_floor_scales_with_the_scores_and_leaves_real_calibrations_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scores = np.r_[np.zeros(199), 1e9]  # mean 5e6: the floor is relative, 5.0
    with caplog.at_level(logging.WARNING, logger="simclr_ad.calibration"):
        assert calibrate_threshold(scores).threshold == pytest.approx(THRESHOLD_FLOOR * 5e6)
        caplog.clear()
        spread = np.random.default_rng(0).uniform(1, 2, size=200)
        calibration = calibrate_threshold(spread)
    assert calibration.threshold == np.sort(spread)[int(np.ceil(201 * 0.99)) - 1]
    assert caplog.text == ""  # no warning for scores with a spread
