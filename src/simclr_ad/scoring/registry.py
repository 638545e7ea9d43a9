"""The scorer registry: every scorer name, the kind of scorer behind it, the features it reads
and the settings its hyper-parameters come from, stated once.

Everything else reads it: the config validates ``scorers`` against it and takes its defaults
from here, the detector builds and feeds scorers from it, and the tests are parametrised over it.
Plain data without torch, so that ``simclr-ad config`` and ``--help`` stay fast; the classes
are looked up by kind in ``scoring.factory``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from simclr_ad.errors import UserError

FEATURES = ("patches", "h", "z")  # patch maps, the pooled encoder output, the projection
SCORE_RULES = ("max", "topk_mean")  # PatchScorer's image score from its map
DEFAULT_SCORE_RULE = "topk_mean"  # the mean of the hottest pixels; "max" is PatchCore's
COVARIANCES = ("ledoit_wolf", "pinv")  # MahalanobisScorer's covariance estimates


@dataclasses.dataclass(frozen=True)
class ScorerSpec:
    """One registered scorer.

    Attributes:
        kind: the scorer class's ``kind`` (``scoring.factory.SCORER_CLASSES``).
        feature: the features it is fitted on and scores, one of ``FEATURES``.
        settings: each hyper-parameter of the class -> the detector setting that gives it.
    """

    kind: str
    feature: str
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def params(self, settings: object) -> dict[str, Any]:
        """The scorer's hyper-parameters read from ``settings`` (a config or detector settings)."""
        return {param: getattr(settings, key) for param, key in self.settings.items()}


_PATCH_SETTINGS = {
    "coreset_ratio": "coreset_ratio",
    "k": "patch_k",
    "sigma": "map_sigma",
    "score_rule": "score_rule",
    "topk_fraction": "topk_fraction",
    "seed": "seed",
    "positional": "positional",
}
_GLOBAL_SETTINGS: dict[str, dict[str, str]] = {
    "knn": {"k": "knn_k"},
    "mahalanobis": {"covariance": "mahalanobis_covariance"},
    "cosine": {},
}

SCORERS: dict[str, ScorerSpec] = {
    "patch": ScorerSpec("patch", "patches", _PATCH_SETTINGS),
    **{
        f"{kind}_{feature}": ScorerSpec(kind, feature, params)
        for kind, params in _GLOBAL_SETTINGS.items()
        for feature in ("h", "z")
    },
}
DEFAULT_SCORERS = ("patch",)  # the detector that is deployed; the write-up's need --scorers all
ALL_SCORERS = "all"  # ``--scorers all``: every registered scorer (the write-up's comparison)


def scorer_spec(name: str) -> ScorerSpec:
    """The registered scorer ``name``.

    Raises:
        UserError: for a name that is not registered, with the valid ones.
    """
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; valid: {', '.join(SCORERS)}")
    return SCORERS[name]
