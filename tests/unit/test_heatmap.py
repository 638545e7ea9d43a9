"""The one colour scale of anomaly maps: positions relative to the threshold, overlays and the
colour bar drawn from the same colour map."""

import numpy as np
import pytest

from simclr_ad.heatmap import HIGH, LOW, OPACITY, colour_stops, overlay, relative_level


def test_the_scale_runs_from_low_to_high_times_the_threshold() -> None:
    threshold = 2.0
    ratios = np.array([0.0, LOW, 1.0, 1.25, HIGH, 10.0])  # map / threshold
    expected = [0.0, 0.0, (1.0 - LOW) / (HIGH - LOW), (1.25 - LOW) / (HIGH - LOW), 1.0, 1.0]
    assert relative_level(ratios * threshold, threshold) == pytest.approx(expected)
    assert relative_level(np.array([threshold]), threshold) == pytest.approx([0.5])  # the middle


def test_overlay_blends_the_scale_colour_over_the_image() -> None:
    black = np.zeros((4, 4, 3), dtype=np.uint8)
    threshold = 3.0
    stops = colour_stops(3)  # low end, the threshold, high end
    assert [ratio for ratio, _ in stops] == pytest.approx([LOW, 1.0, HIGH])
    maps = [np.full((4, 4), r * threshold) for r, _ in stops]
    for (_, colour), anomaly_map in zip(stops, maps, strict=True):
        pixel = np.asarray(overlay(black, anomaly_map, threshold))[0, 0]
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert pixel == pytest.approx([OPACITY * c for c in rgb], abs=1)
    white = np.full((4, 4, 3), 255, dtype=np.uint8)
    lifted = np.asarray(overlay(white, maps[0], threshold)).astype(int)
    dark = np.asarray(overlay(black, maps[0], threshold)).astype(int)
    assert np.abs(lifted - dark - 255 * (1 - OPACITY)).max() <= 1  # the image shows through


def test_colour_stops_go_from_blue_below_the_threshold_to_red_above() -> None:
    stops = colour_stops()
    assert len(stops) == 11 and all(len(c) == 7 and c.startswith("#") for _, c in stops)
    low, high = stops[0][1], stops[-1][1]
    assert int(low[5:7], 16) > int(low[1:3], 16)  # blue above red at the low end
    assert int(high[1:3], 16) > 2 * int(high[5:7], 16)  # red at the high end
