"""The scorer registry as the one source of truth, and the behaviour every registered scorer
shares, parametrised over it."""

import inspect
import json

import pytest
import torch
from safetensors.torch import load, save

from simclr_ad.config import TrainConfig, build_config
from simclr_ad.detector import DetectorSettings, GoodFeatures
from simclr_ad.errors import UserError
from simclr_ad.scoring.base import GlobalScorer
from simclr_ad.scoring.factory import SCORER_CLASSES, create_scorer, scorer_class
from simclr_ad.scoring.patch import PatchScorer
from simclr_ad.scoring.registry import (
    DEFAULT_SCORE_RULE,
    DEFAULT_SCORERS,
    FEATURES,
    SCORERS,
    scorer_spec,
)

NAMES = list(SCORERS)
GLOBAL_NAMES = [name for name, spec in SCORERS.items() if spec.feature != "patches"]
# the tensor names in model.safetensors (scorer.<group>.<name>.<tensor>): bundles written
# before the scorers were modules hold these, and load
SAVED_TENSORS = {
    "patch": ["bank"],
    "knn": ["bank"],
    "mahalanobis": ["mean", "precision"],
    "cosine": ["center"],
}


def normal_features(n: int, seed: int) -> torch.Tensor:
    """n×8 features around a common direction (cosine-, distance- and Gaussian-normal)."""
    g = torch.Generator().manual_seed(seed)
    return 3.0 + 0.5 * torch.randn(n, 8, generator=g)


def new_scorer(name: str) -> GlobalScorer:
    scorer = create_scorer(name, **SCORERS[name].params(TrainConfig()))
    assert isinstance(scorer, GlobalScorer)
    return scorer


@pytest.mark.parametrize("name", NAMES)
def test_every_name_has_a_class_a_feature_and_all_its_settings(name: str) -> None:
    spec = SCORERS[name]
    cls = scorer_class(name)
    assert cls.kind == spec.kind and spec.feature in FEATURES
    accepted = set(inspect.signature(cls).parameters)
    assert set(spec.settings) == accepted  # the registry gives every hyper-parameter
    config_keys = {f for f in TrainConfig.__dataclass_fields__}
    detector_keys = {f for f in DetectorSettings.__dataclass_fields__}
    assert set(spec.settings.values()) <= config_keys & detector_keys
    params = spec.params(TrainConfig(weights="none"))
    assert create_scorer(name, **params).params() == params


def test_every_class_is_registered() -> None:
    assert {spec.kind for spec in SCORERS.values()} == set(SCORER_CLASSES)
    assert all(cls.kind == kind for kind, cls in SCORER_CLASSES.items())


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_the_detector_feeds_each_global_scorer_its_registered_feature(name: str) -> None:
    h, z = torch.zeros(3, 4), torch.ones(3, 2)
    empty = torch.empty(0)
    features = GoodFeatures(h, z, empty, empty.long(), None, empty.long())
    assert features.of(name) is {"h": h, "z": z}[SCORERS[name].feature]


def test_defaults_are_stated_once() -> None:
    assert TrainConfig().scorers == DetectorSettings(image_size=8).scorers == DEFAULT_SCORERS
    assert TrainConfig().score_rule == DetectorSettings(image_size=8).score_rule
    assert PatchScorer().score_rule == DEFAULT_SCORE_RULE == TrainConfig().score_rule


def test_all_names_every_registered_scorer() -> None:
    assert build_config(scorers="all").scorers == tuple(SCORERS)
    assert build_config(scorers=["all"]).scorers == tuple(SCORERS)
    with pytest.raises(UserError, match="knn_h"):
        build_config(scorers="patch,isolation_forest")


@pytest.mark.parametrize("name", NAMES)
def test_saved_tensor_names_are_the_buffers(name: str) -> None:
    assert list(dict(scorer_class(name)().named_buffers())) == SAVED_TENSORS[SCORERS[name].kind]


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_planted_outlier_scores_highest(name: str) -> None:
    scorer = new_scorer(name).fit(normal_features(200, seed=0))
    test = normal_features(20, seed=1)
    test[7] = torch.tensor([3.0, -3.0] * 4)  # another direction, far from the training cloud
    scores = scorer.score(test)
    assert scores.shape == (20,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert int(scores.argmax()) == 7


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_state_round_trip_gives_identical_scores(name: str) -> None:
    scorer = new_scorer(name).fit(normal_features(50, seed=0))
    params = json.loads(json.dumps(scorer.params()))  # as stored in model.json
    state = load(save(scorer.state_dict()))  # as stored in model.safetensors
    assert sorted(state) == SAVED_TENSORS[SCORERS[name].kind]
    rebuilt = scorer_class(name).from_state(params, state)
    test = normal_features(10, seed=2)
    assert rebuilt.is_fitted and torch.equal(rebuilt.score(test), scorer.score(test))


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_scoring_before_fit_is_a_clear_error(name: str) -> None:
    scorer = new_scorer(name)
    assert not scorer.is_fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer.score(normal_features(3, seed=0))


@pytest.mark.parametrize("name", GLOBAL_NAMES)
@pytest.mark.parametrize(
    "bad",
    [torch.zeros(8), torch.zeros(2, 8, 1), torch.zeros(3, 5), torch.zeros(3, 8, dtype=torch.long)],
    ids=["1-D", "3-D", "wrong D", "integer"],
)
def test_bad_inputs_raise(name: str, bad: torch.Tensor) -> None:
    scorer = new_scorer(name).fit(normal_features(20, seed=0))
    with pytest.raises(ValueError):
        scorer.score(bad)


@pytest.mark.parametrize("name", GLOBAL_NAMES)
def test_non_finite_training_features_raise(name: str) -> None:
    features = normal_features(20, seed=0)
    features[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        new_scorer(name).fit(features)


@pytest.mark.parametrize("name", NAMES)
def test_loading_a_wrong_state_raises(name: str) -> None:
    cls = scorer_class(name)
    with pytest.raises(ValueError, match="Missing"):
        cls.from_state({}, {"other": torch.zeros(3)})
    names = SAVED_TENSORS[SCORERS[name].kind]
    with pytest.raises(ValueError, match="not finite"):
        cls.from_state({}, {n: torch.full((2, 2), float("nan")) for n in names})


def test_factory_builds_with_params() -> None:
    scorer = create_scorer("knn_h", k=3)
    assert isinstance(scorer, GlobalScorer) and scorer.params() == {"k": 3}
    assert create_scorer("mahalanobis_z", covariance="pinv").params() == {"covariance": "pinv"}


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UserError, match="patch, knn_h, knn_z, mahalanobis_h"):
        scorer_spec("isolation_forest_h")
    with pytest.raises(UserError, match="cosine_z"):
        create_scorer("knn")


def test_unknown_param_is_named() -> None:
    with pytest.raises(UserError, match="neighbours"):
        create_scorer("knn_h", neighbours=3)
    with pytest.raises(UserError, match="k"):
        create_scorer("cosine_z", k=3)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("knn_h", {"k": 0}),
        ("knn_z", {"k": 2.5}),
        ("mahalanobis_h", {"covariance": "oas"}),
        ("patch", {"score_rule": "mean"}),
    ],
)
def test_invalid_param_values_are_user_errors(name: str, params: dict[str, object]) -> None:
    with pytest.raises(UserError, match=next(iter(params))):
        create_scorer(name, **params)
