import itertools
import json
import time

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from simclr_ad.metrics import (
    aupro,
    bootstrap_auroc_ci,
    image_metrics,
    max_f1,
    paired_auroc_difference,
    per_defect_auroc,
    pixel_auroc,
    tpr_at_fpr,
    trivial_f1,
)


def naive_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Written from the MVTec AD paper: one threshold at a time, one region at a time."""
    masks = masks.astype(bool)
    regions = []
    for image, mask in zip(maps, masks, strict=True):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [image[labelled == k] for k in range(1, n + 1)]
    good = maps[~masks]
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:  # every distinct score, descending
        fpr = np.mean(good >= t)
        pro = np.mean([np.mean(region >= t) for region in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_scores(n: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    return rng.normal(size=n) + separation * labels, labels


# --- image level ----------------------------------------------------------------------------


def test_hand_computed_vector() -> None:
    # pairs (defect, good): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    m = image_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], threshold=0.38)
    assert m.auroc == pytest.approx(0.75)
    # flagged: 0.4 (good) and 0.8 (defect): TP=1, FP=1, FN=1, TN=1
    assert (m.precision, m.recall, m.f1, m.accuracy) == pytest.approx((0.5, 0.5, 0.5, 0.5))
    assert m.f1_max == pytest.approx(0.8)  # t=0.35: TP=2, FP=1 -> 4/5
    assert m.trivial_f1 == pytest.approx(2 / 3)
    assert (m.n_good, m.n_defect, m.threshold) == (2, 2, 0.38)
    assert m.tpr_at_fpr == {"0.01": 0.5, "0.05": 0.5}


def test_threshold_is_inclusive() -> None:
    m = image_metrics([0.2, 0.5], [0, 1], threshold=0.5)
    assert (m.precision, m.recall) == (1.0, 1.0)


def test_ties_count_half() -> None:
    assert image_metrics([0.5, 0.5], [0, 1], threshold=1.0).auroc == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed: int) -> None:
    scores, labels = random_scores(300, seed)
    scores = np.round(scores, 1)  # ties
    threshold = 0.7
    m = image_metrics(scores, labels, threshold=threshold, n_boot=50)
    assert m.auroc == pytest.approx(roc_auc_score(labels, scores))
    assert m.ap == pytest.approx(average_precision_score(labels, scores))
    assert m.f1 == pytest.approx(f1_score(labels, scores >= threshold))
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert m.f1_max == pytest.approx(best)
    assert m.f1_max >= m.f1


def test_max_f1_thresholds_between_distinct_scores() -> None:
    # F1 = 2TP / (flagged + n_defect); the tied 0.5s are flagged together or not at all
    assert max_f1([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.8)
    assert max_f1([0.9, 0.5, 0.5, 0.1], [1, 0, 0, 1]) == pytest.approx(2 / 3)
    assert max_f1([0.1, 0.2], [0, 0]) == 0.0


def test_tpr_at_fpr_takes_best_point_within_target() -> None:
    # 100 good at 0..99, defects at 99.5 (above all good) and 97.5 (above 97 good)
    scores = np.r_[np.arange(100.0), 99.5, 97.5, 50.5]
    labels = np.r_[np.zeros(100), 1, 1, 1]
    result = tpr_at_fpr(scores, labels, fpr_targets=(0.0, 0.01, 0.05))
    assert result == pytest.approx({"0.0": 1 / 3, "0.01": 1 / 3, "0.05": 2 / 3})


def test_trivial_f1_matches_screw() -> None:
    labels = np.r_[np.ones(119), np.zeros(41)]
    assert trivial_f1(labels) == pytest.approx(0.853, abs=5e-4)
    flag_all = image_metrics(np.ones(160), labels, threshold=0.0)
    assert flag_all.f1 == pytest.approx(trivial_f1(labels))


def test_perfect_and_inverted_detectors() -> None:
    labels = np.r_[np.zeros(20), np.ones(10)]
    scores = labels + np.linspace(0, 0.5, 30)
    perfect = image_metrics(scores, labels, threshold=1.0)
    inverted = image_metrics(-scores, labels, threshold=1.0)
    assert (perfect.auroc, perfect.ap, perfect.f1_max) == pytest.approx((1.0, 1.0, 1.0))
    assert perfect.auroc_ci95 == (1.0, 1.0)
    assert inverted.auroc == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_none_not_nan(label: int) -> None:
    m = image_metrics([0.1, 0.5, 0.9], [label] * 3, threshold=0.4)
    assert (m.auroc, m.auroc_ci95, m.ap, m.tpr_at_fpr) == (None, None, None, None)
    assert m.precision == (1.0 if label else 0.0)
    assert m.accuracy == pytest.approx(2 / 3 if label else 1 / 3)
    assert m.f1_max == (1.0 if label else 0.0)
    json.dumps(m.to_dict(), allow_nan=False)


def test_to_dict_is_json() -> None:
    scores, labels = random_scores(50, 0)
    values = image_metrics(scores, labels, threshold=0.5, n_boot=20).to_dict()
    assert json.loads(json.dumps(values, allow_nan=False)) == values
    assert len(values["auroc_ci95"]) == 2


@pytest.mark.parametrize(
    ("scores", "labels"),
    [([0.1, 0.2], [0, 2]), ([0.1, 0.2], [0]), ([0.1, float("nan")], [0, 1]), ([], [])],
)
def test_rejects_bad_input(scores: list[float], labels: list[int]) -> None:
    with pytest.raises(ValueError):
        image_metrics(scores, labels, threshold=0.5)


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_narrows() -> None:
    widths = []
    for n in (60, 600):
        scores, labels = random_scores(n, seed=3)
        low, high = bootstrap_auroc_ci(scores, labels, n_boot=500, seed=0)
        assert low <= roc_auc_score(labels, scores) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # width ~ 1/sqrt(n)


def test_bootstrap_is_seeded_and_fast() -> None:
    scores, labels = random_scores(200, seed=4)
    start = time.perf_counter()
    first = bootstrap_auroc_ci(scores, labels, n_boot=1000, seed=7)
    assert time.perf_counter() - start < 1.0
    assert bootstrap_auroc_ci(scores, labels, n_boot=1000, seed=7) == first
    assert bootstrap_auroc_ci(scores, labels, n_boot=1000, seed=8) != first


def test_paired_difference_matches_aurocs_and_cancels_shared_noise() -> None:
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(40), np.ones(80)]
    b = labels + rng.normal(0, 1.0, labels.size)  # AUROC ~0.76
    a = b + 0.6 * labels + rng.normal(0, 0.05, labels.size)  # the same parts, defects pushed up
    delta, (low, high) = paired_auroc_difference(a, b, labels, n_boot=1000, seed=0)
    assert delta == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    assert 0 < low <= delta <= high
    # pairing: the difference's interval is narrower than either AUROC's own interval
    b_low, b_high = bootstrap_auroc_ci(b, labels, n_boot=1000, seed=0)
    assert high - low < (b_high - b_low) / 2


def test_paired_difference_of_a_detector_with_itself_is_zero() -> None:
    scores, labels = random_scores(100, seed=6)
    assert paired_auroc_difference(scores, scores, labels, n_boot=200) == (0.0, (0.0, 0.0))


def test_paired_difference_needs_the_same_images() -> None:
    scores, labels = random_scores(100, seed=6)
    with pytest.raises(ValueError, match="same images"):
        paired_auroc_difference(scores, scores[:-1], labels)
    with pytest.raises(ValueError, match="both good and defective"):
        paired_auroc_difference(scores, scores, np.ones_like(labels))


def test_bootstrap_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        bootstrap_auroc_ci([0.1, 0.2], [1, 1])


# --- per defect type ------------------------------------------------------------------------


def test_per_defect_auroc_uses_all_good_images() -> None:
    scores = [0.1, 0.2, 0.3, 0.9, 0.15, 0.05]
    labels = [0, 0, 0, 1, 1, 1]
    types = ["good", "good", "good", "crack", "scratch", "scratch"]
    result = per_defect_auroc(scores, labels, types)
    assert list(result) == ["crack", "scratch"]
    assert (result["crack"].auroc, result["crack"].n) == (1.0, 1)
    # scratch: 0.15 beats 0.1 only; 0.05 beats none -> 1/6
    assert result["scratch"].auroc == pytest.approx(1 / 6)
    assert result["scratch"].n == 2


# --- pixel level ----------------------------------------------------------------------------


def random_maps(seed: int, shape: tuple[int, int, int] = (4, 12, 12)) -> tuple:
    rng = np.random.default_rng(seed)
    masks = ndimage.binary_dilation(rng.random(shape) < 0.03, structure=np.ones((1, 3, 3)))
    maps = rng.random(shape) + 0.6 * masks
    return np.round(maps, 2), masks  # rounding makes ties


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_agrees_with_sklearn(seed: int) -> None:
    maps, masks = random_maps(seed)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_undefined_without_both_classes() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert pixel_auroc(maps, np.zeros_like(maps, dtype=bool)) is None
    assert pixel_auroc(maps, np.ones_like(maps, dtype=bool)) is None


def test_maps_and_masks_must_match() -> None:
    with pytest.raises(ValueError, match="N×H×W"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), dtype=bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_naive_reference(seed: int, fpr_limit: float) -> None:
    maps, masks = random_maps(seed)
    expected = naive_aupro(maps, masks, fpr_limit)
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_aupro_perfect_inverted_and_random() -> None:
    _, masks = random_maps(0, shape=(8, 64, 64))
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert aupro(1.0 - masks, masks) == pytest.approx(0.0)
    noise = np.random.default_rng(1).random(masks.shape)
    assert aupro(noise, masks) == pytest.approx(0.15, abs=0.02)  # PRO = FPR: area L²/2 over L


def test_aupro_hand_computed() -> None:
    # ten good pixels scoring 0.0..0.9, one one-pixel region scoring 0.85:
    # FPR 0-0.1 finds nothing (PRO 0), from 0.1 on PRO is 1 -> area 0.2 of 0.3
    maps = np.r_[np.arange(10) / 10, 0.85].reshape(1, 1, 11)
    masks = np.r_[np.zeros(10), 1].reshape(1, 1, 11)
    assert aupro(maps, masks) == pytest.approx(2 / 3)


def test_aupro_averages_regions_not_pixels() -> None:
    # a found one-pixel region and a missed three-pixel region: PRO 1/2 (pixel share: 1/4)
    maps = np.zeros((1, 5, 10))
    masks = np.zeros((1, 5, 10), dtype=bool)
    masks[0, 0, 0] = True
    masks[0, 3, 5:8] = True
    maps[0, 0, 0] = 1.0
    maps[0, 3, 5:8] = -1.0
    assert aupro(maps, masks) == pytest.approx(0.5)


def test_aupro_regions_do_not_join_across_images() -> None:
    # the same pixel defective in two images: two regions, one found, one missed
    maps = np.zeros((2, 3, 3))
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[:, 1, 1] = True
    maps[0, 1, 1], maps[1, 1, 1] = 1.0, -1.0
    assert aupro(maps, masks) == pytest.approx(0.5)


def test_aupro_diagonal_neighbours_are_one_region() -> None:
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # 8-connected: one region of two pixels
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0], maps[0, 1, 1] = 1.0, -1.0
    assert aupro(maps, masks) == pytest.approx(0.5)  # half the one region's pixels


def test_aupro_undefined_without_regions() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert aupro(maps, np.zeros_like(maps, dtype=bool)) is None
    assert aupro(maps, np.ones_like(maps, dtype=bool)) is None
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, maps > 0.5, fpr_limit=0.0)
