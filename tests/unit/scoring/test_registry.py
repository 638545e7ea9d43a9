"""Behaviour shared by every global scorer, parametrized over the registry, and the factory."""

import json

import pytest
import torch
from safetensors.torch import load, save

from simclr_ad import config
from simclr_ad.errors import UserError
from simclr_ad.scoring import GLOBAL_SCORERS, GlobalScorer, create_global_scorer
from simclr_ad.scoring.mahalanobis import COVARIANCES
from simclr_ad.scoring.patch import SCORE_RULES

KINDS = sorted(GLOBAL_SCORERS)


def normal_features(n: int, seed: int) -> torch.Tensor:
    """n×8 features around a common direction (cosine-, distance- and Gaussian-normal)."""
    g = torch.Generator().manual_seed(seed)
    return 3.0 + 0.5 * torch.randn(n, 8, generator=g)


def test_registry_matches_config() -> None:
    assert set(GLOBAL_SCORERS) == set(config.GLOBAL_SCORER_KINDS)
    assert tuple(SCORE_RULES) == tuple(config.SCORE_RULES)
    assert tuple(COVARIANCES) == tuple(config.COVARIANCES)
    assert all(cls.kind == kind for kind, cls in GLOBAL_SCORERS.items())


@pytest.mark.parametrize("kind", KINDS)
def test_planted_outlier_scores_highest(kind: str) -> None:
    scorer = create_global_scorer(kind).fit(normal_features(200, seed=0))
    test = normal_features(20, seed=1)
    test[7] = torch.tensor([3.0, -3.0] * 4)  # another direction, far from the training cloud
    scores = scorer.score(test)
    assert scores.shape == (20,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert int(scores.argmax()) == 7


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_gives_identical_scores(kind: str) -> None:
    scorer = create_global_scorer(kind).fit(normal_features(50, seed=0))
    params = json.loads(json.dumps(scorer.params()))  # as stored in model.json
    state = load(save(scorer.state_dict()))  # as stored in model.safetensors
    rebuilt = GLOBAL_SCORERS[kind].from_state(params, state)
    test = normal_features(10, seed=2)
    assert torch.equal(rebuilt.score(test), scorer.score(test))


@pytest.mark.parametrize("kind", KINDS)
def test_scoring_before_fit_is_a_clear_error(kind: str) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        create_global_scorer(kind).score(normal_features(3, seed=0))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "bad",
    [torch.zeros(8), torch.zeros(2, 8, 1), torch.zeros(3, 5), torch.zeros(3, 8, dtype=torch.long)],
    ids=["1-D", "3-D", "wrong D", "integer"],
)
def test_bad_inputs_raise(kind: str, bad: torch.Tensor) -> None:
    scorer = create_global_scorer(kind).fit(normal_features(20, seed=0))
    with pytest.raises(ValueError):
        scorer.score(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_training_features_raise(kind: str) -> None:
    features = normal_features(20, seed=0)
    features[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        create_global_scorer(kind).fit(features)


@pytest.mark.parametrize("kind", KINDS)
def test_loading_a_wrong_state_raises(kind: str) -> None:
    with pytest.raises(ValueError, match="missing"):
        GLOBAL_SCORERS[kind]().load_state_dict({"other": torch.zeros(3)})


def test_factory_builds_with_params() -> None:
    scorer = create_global_scorer("knn", k=3)
    assert isinstance(scorer, GlobalScorer) and scorer.params() == {"k": 3}
    assert create_global_scorer("mahalanobis", covariance="pinv").params() == {"covariance": "pinv"}


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(UserError, match="knn, mahalanobis, cosine"):
        create_global_scorer("isolation_forest")


def test_unknown_param_is_named() -> None:
    with pytest.raises(UserError, match="neighbours"):
        create_global_scorer("knn", neighbours=3)
    with pytest.raises(UserError, match="k"):
        create_global_scorer("cosine", k=3)


@pytest.mark.parametrize(
    ("kind", "params"),
    [("knn", {"k": 0}), ("knn", {"k": 2.5}), ("mahalanobis", {"covariance": "oas"})],
)
def test_invalid_param_values_are_user_errors(kind: str, params: dict[str, object]) -> None:
    with pytest.raises(UserError, match=next(iter(params))):
        create_global_scorer(kind, **params)
