"""PatchCore-style patch scorer on hand-made feature maps."""

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, save

from simclr_ad.scoring.patch import (
    PatchPrediction,
    PatchScorer,
    PositionStats,
    gaussian_blur,
    standardise,
)

C, H = 16, 7  # channels and side of the feature maps


def normal_maps(n: int, seed: int) -> torch.Tensor:
    """n×C×H×H feature maps whose patches all come from one cloud."""
    g = torch.Generator().manual_seed(seed)
    return 1.0 + 0.1 * torch.randn(n, C, H, H, generator=g)


def as_patches(maps: torch.Tensor) -> torch.Tensor:
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def fitted(**params: object) -> PatchScorer:
    return PatchScorer(**params).fit(as_patches(normal_maps(6, seed=0)))  # type: ignore[arg-type]


@pytest.mark.parametrize("score_rule", ["max", "topk_mean"])
def test_anomalous_patch_is_the_maps_hot_spot(score_rule: str) -> None:
    scorer = fitted(coreset_ratio=0.25, score_rule=score_rule, sigma=4.0)
    test = normal_maps(4, seed=1)
    test[2, :, 5, 1] = 3.0  # one anomalous patch in image 2, row 5, column 1
    prediction = scorer.predict(test, image_size=8 * H)
    assert isinstance(prediction, PatchPrediction)
    assert prediction.maps.shape == (4, 8 * H, 8 * H) and prediction.scores.shape == (4,)
    row, column = divmod(int(prediction.maps[2].argmax()), 8 * H)
    assert (row // 8, column // 8) == (5, 1)
    assert int(prediction.scores.argmax()) == 2


def test_patch_distances_closed_form() -> None:
    scorer = PatchScorer(coreset_ratio=1.0, k=1).fit(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    features = torch.tensor([[0.0, 6.0], [0.0, 8.0]]).view(1, 2, 1, 2)  # patches (0,0), (6,8)
    assert scorer.patch_distances(features).flatten().tolist() == pytest.approx([0.0, 5.0])
    scorer_k2 = PatchScorer(coreset_ratio=1.0, k=2).fit(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert scorer_k2.patch_distances(features).flatten().tolist() == pytest.approx([2.5, 7.5])


def test_sigma_zero_leaves_the_upsampled_map_unchanged() -> None:
    scorer = fitted(sigma=0.0)
    test = normal_maps(2, seed=1)
    upsampled = F.interpolate(
        scorer.patch_distances(test)[:, None], size=(40, 40), mode="bilinear", align_corners=False
    )[:, 0]
    assert torch.equal(scorer.anomaly_maps(test, image_size=40), upsampled)


def test_gaussian_blur_of_an_impulse_is_the_gaussian() -> None:
    sigma, size = 2.0, 41
    impulse = torch.zeros(1, size, size)
    impulse[0, 20, 20] = 1.0
    blurred = gaussian_blur(impulse, sigma=sigma)[0]
    offsets = torch.arange(size, dtype=torch.float32) - 20
    radius = math.ceil(4 * sigma)
    g = torch.exp(-(offsets**2) / (2 * sigma**2)) * (offsets.abs() <= radius)
    g = g / g.sum()
    assert torch.allclose(blurred, torch.outer(g, g), atol=1e-7)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_gaussian_blur_keeps_constant_maps_and_small_maps_work() -> None:
    assert torch.allclose(gaussian_blur(torch.full((2, 9, 9), 3.0), sigma=4.0), torch.tensor(3.0))
    assert gaussian_blur(torch.ones(1, 1, 1), sigma=4.0).shape == (1, 1, 1)


def test_image_score_rules_closed_form() -> None:
    maps = torch.arange(100, dtype=torch.float32).view(1, 10, 10)
    assert PatchScorer(score_rule="max").image_scores(maps).item() == 99.0
    top5 = PatchScorer(score_rule="topk_mean", topk_fraction=0.05).image_scores(maps)
    assert top5.item() == pytest.approx(97.0)  # mean of 95..99
    tiny = PatchScorer(score_rule="topk_mean", topk_fraction=0.001).image_scores(maps)
    assert tiny.item() == 99.0  # at least one pixel
    either = PatchScorer(score_rule="max", topk_fraction=0.05)
    assert either.image_scores(maps, "topk_mean").item() == pytest.approx(97.0)
    assert either.image_scores(maps).item() == 99.0  # the override does not stick
    with pytest.raises(ValueError, match="rule must be one of"):
        either.image_scores(maps, "median")


@pytest.mark.parametrize(("ratio", "kept"), [(1.0, 294), (0.1, 29), (0.001, 1)])
def test_bank_size_follows_the_coreset_ratio(ratio: float, kept: int) -> None:
    bank = fitted(coreset_ratio=ratio).state_dict()["bank"]
    assert bank.shape == (kept, C) and bank.dtype == torch.float32


def test_full_ratio_keeps_the_patches_in_order() -> None:
    patches = as_patches(normal_maps(2, seed=0))
    assert torch.equal(PatchScorer(coreset_ratio=1.0).fit(patches).state_dict()["bank"], patches)


def test_state_round_trip_gives_identical_predictions() -> None:
    scorer = fitted(coreset_ratio=0.2, k=3, score_rule="topk_mean")
    params = json.loads(json.dumps(scorer.params()))
    rebuilt = PatchScorer.from_state(params, load(save(scorer.state_dict())))
    test = normal_maps(3, seed=2)
    a, b = scorer.predict(test, image_size=32), rebuilt.predict(test, image_size=32)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)
    assert rebuilt.params() == scorer.params()


def test_score_defaults_to_eight_times_the_feature_resolution() -> None:
    scorer = fitted()
    test = normal_maps(2, seed=3)
    assert torch.equal(scorer.score(test), scorer.predict(test, image_size=8 * H).scores)
    assert torch.equal(scorer.score(test, image_size=20), scorer.predict(test, 20).scores)


def test_k_larger_than_the_bank_uses_all(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        scorer = PatchScorer(coreset_ratio=1.0, k=5).fit(torch.tensor([[0.0], [2.0]]))
    assert "exceeds" in caplog.text
    features = torch.tensor([[[[0.0]]]])
    assert scorer.patch_distances(features).item() == pytest.approx(1.0)


def test_scoring_before_fit_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        PatchScorer().score(normal_maps(1, seed=0))


@pytest.mark.parametrize(
    "params",
    [
        {"coreset_ratio": 0.0},
        {"coreset_ratio": 1.5},
        {"k": 0},
        {"k": 1.0},
        {"sigma": -1.0},
        {"sigma": float("nan")},
        {"score_rule": "mean"},
        {"topk_fraction": 0.0},
        {"seed": "0"},
    ],
)
def test_bad_arguments_raise(params: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        PatchScorer(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "features",
    [torch.zeros(2, C, H), torch.zeros(2, C + 1, H, H), torch.full((1, C, H, H), float("inf"))],
    ids=["3-D", "wrong C", "inf"],
)
def test_bad_feature_maps_raise(features: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        fitted().predict(features, image_size=16)


def test_bad_image_size_raises() -> None:
    with pytest.raises(ValueError, match="image_size"):
        fitted().predict(normal_maps(1, seed=0), image_size=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_traced_forward_gives_the_eager_predictions() -> None:
    """The traced module (what the ONNX export runs: exact torch search in one product) and the
    eager one (NearestNeighbourIndex) give the same scores and maps, at another batch size."""
    for score_rule in ("max", "topk_mean"):
        scorer = fitted(coreset_ratio=0.5, k=2, score_rule=score_rule)
        traced = torch.jit.trace(lambda f, s=scorer: tuple(s(f, (20, 24))), (normal_maps(2, 5),))
        test = normal_maps(3, seed=4)
        test[1, :, 3, 3] += 2.0  # an anomalous patch
        scores, maps = traced(test)
        eager = scorer.predict(test, (20, 24))
        torch.testing.assert_close(scores, eager.scores, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(maps, eager.maps, rtol=1e-5, atol=1e-6)
        assert int(scores.argmax()) == 1


def test_moving_the_module_moves_the_bank_and_its_search() -> None:
    scorer = fitted(coreset_ratio=0.5)
    test = normal_maps(2, seed=6)
    before = scorer.predict(test, 16).scores
    moved = scorer.to(torch.float64)  # a module: .to() converts and moves its buffers
    assert moved.bank.dtype == torch.float64
    torch.testing.assert_close(moved.predict(test.double(), 16).scores, before)


def test_position_stats_are_the_pooled_maps_mean_and_spread_and_leave_maps_out() -> None:
    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(1, 16, 24, generator=g) * (i + 1) for i in range(5)]  # pooled: 2×3
    stats = PositionStats.of(maps)
    pooled = torch.cat([F.avg_pool2d(m[:, None], 8)[:, 0] for m in maps])
    mean, scale = stats.moments()
    torch.testing.assert_close(mean, pooled.mean(0))
    spread = pooled.std(0)
    torch.testing.assert_close(scale, spread.clamp_min(0.5 * float(spread.mean())))
    others_mean, _ = stats.without([maps[2]]).moments()
    torch.testing.assert_close(others_mean, pooled[[0, 1, 3, 4]].mean(0))
    with pytest.raises(ValueError, match="at least 2 maps"):
        PositionStats.of(maps[:1]).moments()


def test_the_floor_keeps_a_position_where_every_good_map_agrees_finite() -> None:
    maps = [torch.full((1, 16, 16), 3.0) for _ in range(4)]
    maps[0][0, :8, :8] = 5.0  # only the top-left position varies
    mean, scale = PositionStats.of(maps).moments()
    assert bool((scale > 0).all()) and scale[1, 1] == scale.min()
    standard = standardise(torch.full((1, 16, 16), 3.0), mean, scale)
    assert torch.isfinite(standard).all()


def test_a_positional_scorer_weighs_a_bump_by_how_much_good_parts_vary_there() -> None:
    """The same bump scores lower where good images' maps vary and higher where they agree."""
    scorer = fitted(coreset_ratio=1.0, sigma=0.0, positional=True, score_rule="max")
    good = []
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        features = normal_maps(1, seed=int(torch.randint(100, (1,), generator=g)))
        features[0, :, 0, 0] += 2.0 * float(torch.rand(1, generator=g))  # a corner that varies
        good.append(scorer.predict(features, 56, raw=True).maps)
    scorer.set_positions(PositionStats.of(good))
    corner = normal_maps(2, seed=50)  # image 0: a bump in the corner, image 1: in the centre
    corner[0, :, 0, 0] += 1.5
    corner[1, :, 3, 3] += 1.5
    raw = scorer.predict(corner, 56, raw=True).scores
    standard = scorer.predict(corner, 56).scores
    assert abs(float(raw[0]) - float(raw[1])) < 0.3 * float(raw.max())  # alike before
    assert standard[1] > 2 * standard[0]  # after: the quiet centre's bump stands out
    with pytest.raises(ValueError, match="set_positions"):
        fitted(positional=True).predict(normal_maps(1, seed=0), 56)
    with pytest.raises(ValueError, match="positional=True"):
        fitted().set_positions(PositionStats.of(good))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_a_positional_scorer_round_trips_and_traces() -> None:
    scorer = fitted(coreset_ratio=0.5, positional=True)
    good = [scorer.predict(normal_maps(1, seed=s), (20, 24), raw=True).maps for s in range(9, 14)]
    scorer.set_positions(PositionStats.of(good))
    params = json.loads(json.dumps(scorer.params()))
    rebuilt = PatchScorer.from_state(params, load(save(scorer.state_dict())))
    test = normal_maps(3, seed=2)
    a, b = scorer.predict(test, (20, 24)), rebuilt.predict(test, (20, 24))
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)
    assert not torch.equal(a.maps, scorer.predict(test, (20, 24), raw=True).maps)
    traced = torch.jit.trace(lambda f: tuple(scorer(f, (20, 24))), (normal_maps(2, 5),))
    scores, maps = traced(test)
    torch.testing.assert_close(scores, a.scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps, a.maps, rtol=1e-5, atol=1e-5)
