"""Scorer classes by kind, and the one factory that builds a registered scorer.

``registry.SCORERS`` names every scorer with its kind; each class states its own ``kind``, and
``SCORER_CLASSES`` collects them, so the name → class link is made here only.
"""

from __future__ import annotations

import inspect
from typing import Any

from simclr_ad.errors import UserError
from simclr_ad.scoring.base import Scorer
from simclr_ad.scoring.cosine import CosineScorer
from simclr_ad.scoring.knn import KNNScorer
from simclr_ad.scoring.mahalanobis import MahalanobisScorer
from simclr_ad.scoring.patch import PatchScorer
from simclr_ad.scoring.registry import scorer_spec

SCORER_CLASSES: dict[str, type[Scorer]] = {
    cls.kind: cls for cls in (PatchScorer, KNNScorer, MahalanobisScorer, CosineScorer)
}


def scorer_class(name: str) -> type[Scorer]:
    """The class of registered scorer ``name`` (e.g. ``KNNScorer`` for ``"knn_h"``).

    Raises:
        UserError: for a name that is not registered.
    """
    return SCORER_CLASSES[scorer_spec(name).kind]


def create_scorer(name: str, **params: Any) -> Scorer:
    """A new, unfitted scorer registered as ``name``.

    Args:
        name: a key of ``registry.SCORERS``.
        **params: the scorer's hyper-parameters (e.g. ``k=5`` for ``"knn_h"``); the settings
            the registry names give them all: ``create_scorer(n, **SCORERS[n].params(s))``.

    Raises:
        UserError: for an unknown name, an unknown parameter or an invalid value.
    """
    cls = scorer_class(name)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UserError(
            f"unknown parameter(s) for scorer {name!r}: {', '.join(unknown)}; "
            f"valid: {', '.join(accepted) or 'none'}"
        )
    try:
        return cls(**params)
    except ValueError as exc:
        raise UserError(f"scorer {name!r}: {exc}") from None
