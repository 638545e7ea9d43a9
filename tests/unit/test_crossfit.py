"""Cross-fitted calibration: every good image scored by scorers that never saw it."""

import pytest
import torch

from simclr_ad.calibration import Calibration, calibrate_threshold
from simclr_ad.detector import (
    DetectorSettings,
    GoodFeatures,
    ScorerSet,
    cross_fitted_scores,
    fit_scorers,
    fold_of,
    leave_one_out_map,
)
from simclr_ad.embeddings import flatten_patches
from simclr_ad.preprocessing import Photometric
from simclr_ad.scoring.patch import PatchScorer, PositionStats, standardise


def _features(maps: torch.Tensor) -> GoodFeatures:
    """Every patch of N×C×h×w maps a candidate; all images mapped; h = z = mean patch."""
    N, _, h, w = maps.shape
    pooled = maps.mean(dim=(2, 3))
    return GoodFeatures(
        h=pooled,
        z=pooled,
        candidates=flatten_patches(maps),
        owners=torch.arange(N).repeat_interleave(h * w),
        maps=maps.half(),
        mapped=torch.arange(N),
    )


def test_fold_of_is_balanced_seeded_and_capped_at_n() -> None:
    fold = fold_of(23, 5, seed=3)
    assert sorted(torch.bincount(fold).tolist()) == [4, 4, 5, 5, 5]
    assert torch.equal(fold, fold_of(23, 5, seed=3))
    assert not torch.equal(fold, fold_of(23, 5, seed=4))
    assert torch.bincount(fold_of(3, 5, seed=0)).tolist() == [1, 1, 1]  # leave one out


def test_an_image_unlike_the_others_scores_high_out_of_fold_but_zero_in_sample() -> None:
    maps = torch.ones(10, 4, 3, 3) + 0.01 * torch.arange(10).view(10, 1, 1, 1)
    maps[6] = torch.tensor([5.0, -5.0, 5.0, -5.0]).view(4, 1, 1)  # one image unlike the others
    settings = DetectorSettings(image_size=24, scorers=("patch", "knn_h"), coreset_ratio=1.0)
    features = _features(maps)
    everything = torch.ones(10, dtype=torch.bool)
    fitted = fit_scorers(features, everything, settings, Photometric(), torch.device("cpu"))
    assert fitted.patch is not None
    in_sample = fitted.patch.score(maps, image_size=(24, 24))
    assert in_sample[6] == pytest.approx(0.0, abs=1e-4)  # its own patches are in the bank
    scores = cross_fitted_scores(features, fitted, settings, (24, 24))
    # out of fold its nearest patch is image 0's (1, 1, 1, 1): sqrt(2·4² + 2·6²)
    assert scores["patch"][6] == pytest.approx(104**0.5, rel=1e-3)
    others = torch.arange(10) != 6
    assert scores["patch"][others].max() < 0.05  # the next image is 0.01 away per channel
    assert scores["knn_h"][6] == pytest.approx(1.0, abs=1e-4)  # orthogonal to every other h
    assert scores["knn_h"][others].max() < 1e-4


def test_excluded_bank_patches_are_never_matched() -> None:
    bank = torch.arange(12.0).view(6, 2)  # rows (0, 1), (2, 3), ... (10, 11)
    scorer = PatchScorer(coreset_ratio=1.0, k=2, sigma=0.0).fit(bank)
    query = bank[1].view(1, 2, 1, 1)
    assert scorer.patch_distances(query).item() == pytest.approx(8**0.5 / 2)  # 0 and sqrt(8)
    drop = torch.tensor([True, True, False, False, False, False])
    # without rows 0 and 1 the two nearest are rows 2 and 3: sqrt(8) and sqrt(32)
    expected = (8**0.5 + 32**0.5) / 2
    assert scorer.patch_distances(query, exclude=drop).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="between 1 and the 0 bank vectors"):
        scorer.patch_distances(query, exclude=torch.ones(6, dtype=torch.bool))


def test_leave_one_out_patch_scores_match_a_bank_refitted_without_the_image() -> None:
    maps = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    settings = DetectorSettings(image_size=24, scorers=("patch",), coreset_ratio=1.0)
    features = _features(maps)
    everything = torch.ones(6, dtype=torch.bool)
    fitted = fit_scorers(features, everything, settings, Photometric(), torch.device("cpu"))
    scores = cross_fitted_scores(features, fitted, settings, (24, 24))["patch"]
    for i in range(6):
        others = torch.arange(6) != i
        refitted = fit_scorers(features, others, settings, Photometric(), torch.device("cpu"))
        assert refitted.patch is not None
        stored = maps[i : i + 1].half().float()  # the maps are kept as float16
        expected = refitted.patch.score(stored, image_size=(24, 24))[0]
        assert scores[i] == pytest.approx(float(expected), rel=1e-5)


def test_cross_fitted_calibration_records_its_source_and_round_trips() -> None:
    calibration = calibrate_threshold(torch.rand(120).numpy(), 0.01, folds=5)
    assert (calibration.method, calibration.source, calibration.folds) == (
        "conformal",
        "cross-fitted",
        5,
    )
    assert "120 5-fold cross-fitted good scores" in calibration.promise
    assert "120 leave-one-out good scores" in calibrate_threshold([1.0] * 120, folds=120).promise
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    older = {k: v for k, v in calibration.to_dict().items() if k not in ("source", "folds")}
    assert Calibration.from_dict(older).source == "held-out"  # bundles before cross-fitting


def test_crossfit_needs_three_images() -> None:
    from simclr_ad.detector import _fit_group

    class Never(torch.nn.Module):  # never reached: refused before any feature is computed
        pass

    settings = DetectorSettings(image_size=8)
    with pytest.raises(ValueError, match="at least 3"):
        one = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
        _fit_group(Never(), one, settings, torch.device("cpu"))  # type: ignore[arg-type]


def test_scorer_set_shape_defaults_to_square() -> None:
    assert ScorerSet(patch=None, global_scorers={}).shape is None


def test_positional_scores_standardise_each_image_by_the_others_maps() -> None:
    maps = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    maps[3, :, 1, 1] += 4.0  # one image with a patch unlike any other's
    settings = DetectorSettings(
        image_size=24, scorers=("patch",), coreset_ratio=1.0, positional=True
    )
    features = _features(maps)
    everything = torch.ones(6, dtype=torch.bool)
    fitted = fit_scorers(features, everything, settings, Photometric(), torch.device("cpu"))
    patch = fitted.patch
    assert patch is not None and patch.positional
    scores = cross_fitted_scores(features, fitted, settings, (24, 24))["patch"]
    raw = [leave_one_out_map(features, patch, i, i, (24, 24)).half() for i in range(6)]
    everyone = PositionStats.of(raw)
    torch.testing.assert_close(patch.position_mean, everyone.moments()[0])  # set from all six
    for i in range(6):
        others = PositionStats.of([m for j, m in enumerate(raw) if j != i]).moments()
        expected = patch.image_scores(standardise(raw[i].float(), *others))[0]
        assert scores[i] == pytest.approx(float(expected), rel=1e-4)
    in_sample = patch.image_scores(standardise(raw[3].float(), *everyone.moments()))[0]
    assert scores[3] > 1.5 * in_sample  # its own peak, in the statistics, would hide itself
    assert int(scores.argmax()) == 3
