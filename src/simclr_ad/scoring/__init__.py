"""Anomaly scorers over feature tensors: ``fit(normal features) -> self``, ``score(x) -> N``.

Global scorers (one vector per image) are registered in ``GLOBAL_SCORERS`` and built by
``create_global_scorer``; ``PatchScorer`` scores patch feature maps and makes anomaly maps.
Scorers never see models or data loaders, only tensors.
"""

from __future__ import annotations

import inspect
from typing import Any

from simclr_ad.errors import UserError
from simclr_ad.scoring.base import GlobalScorer, Scorer
from simclr_ad.scoring.coreset import greedy_coreset
from simclr_ad.scoring.cosine import CosineScorer
from simclr_ad.scoring.knn import KNNScorer
from simclr_ad.scoring.mahalanobis import MahalanobisScorer
from simclr_ad.scoring.patch import PatchPrediction, PatchScorer, gaussian_blur
from simclr_ad.scoring.search import NearestNeighbourIndex, nearest_distances

__all__ = [
    "GLOBAL_SCORERS",
    "CosineScorer",
    "GlobalScorer",
    "KNNScorer",
    "MahalanobisScorer",
    "NearestNeighbourIndex",
    "PatchPrediction",
    "PatchScorer",
    "Scorer",
    "create_global_scorer",
    "gaussian_blur",
    "greedy_coreset",
    "nearest_distances",
]

GLOBAL_SCORERS: dict[str, type[GlobalScorer]] = {
    "knn": KNNScorer,
    "mahalanobis": MahalanobisScorer,
    "cosine": CosineScorer,
}


def create_global_scorer(kind: str, **params: Any) -> GlobalScorer:
    """A new, unfitted global scorer of a registered kind.

    Args:
        kind: a key of ``GLOBAL_SCORERS``.
        **params: the scorer's hyper-parameters (e.g. ``k=5`` for ``"knn"``).

    Raises:
        UserError: for an unknown kind, an unknown parameter or an invalid value.
    """
    if kind not in GLOBAL_SCORERS:
        raise UserError(f"unknown scorer {kind!r}; valid: {', '.join(GLOBAL_SCORERS)}")
    cls = GLOBAL_SCORERS[kind]
    accepted = [name for name in inspect.signature(cls).parameters if name != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UserError(
            f"unknown parameter(s) for scorer {kind!r}: {', '.join(unknown)}; "
            f"valid: {', '.join(accepted) or 'none'}"
        )
    try:
        return cls(**params)
    except ValueError as exc:
        raise UserError(f"scorer {kind!r}: {exc}") from None
