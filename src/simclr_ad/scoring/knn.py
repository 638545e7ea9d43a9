"""k-nearest-neighbour scorer: mean cosine distance to the k closest training features."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.scoring.base import GlobalScorer

logger = logging.getLogger(__name__)

MAX_SIMILARITIES = 1 << 24  # query×bank similarities held at once (64 MiB of float32)
MAX_QUERY_CHUNK = 4096


class KNNScorer(GlobalScorer):
    """Score = mean of the k smallest cosine distances ``1 - cos(x, t)`` to training features t.

    The search is exact (a matrix product in query chunks of bounded memory). When k exceeds
    the number of training features, all of them are used and a warning is logged.

    Args:
        k: the number of neighbours, >= 1.
    """

    kind: ClassVar[str] = "knn"
    bank: Tensor  # K×D L2-normalised training features

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        self.k = k
        self.register_buffer("bank", torch.empty(0, 0))

    def params(self) -> dict[str, Any]:
        """The hyper-parameters: ``{"k": k}``."""
        return {"k": self.k}

    def _fit(self, features: Tensor) -> None:
        self.bank = F.normalize(features.float(), dim=1)

    def check_state(self) -> None:
        super().check_state()
        if self.bank.ndim != 2 or self.bank.shape[0] < 1:
            raise ValueError(f"knn state: bank must be K×D, got {tuple(self.bank.shape)}")
        K = self.bank.shape[0]
        if self.k > K:
            logger.warning("knn: k=%d exceeds the %d training features; using all", self.k, K)

    def forward(self, features: Tensor) -> Tensor:
        """M×D features on the bank's device -> M scores (use ``score`` for checked inputs)."""
        bank = self.bank  # K×D
        K = bank.shape[0]
        k = min(self.k, K)
        queries = F.normalize(features.to(bank.dtype), dim=1)  # M×D
        chunk = max(1, min(MAX_QUERY_CHUNK, MAX_SIMILARITIES // K))
        scores = [_mean_knn_distance(q @ bank.T, k) for q in queries.split(chunk)]
        return torch.cat(scores)


def _mean_knn_distance(similarities: Tensor, k: int) -> Tensor:
    """Mean of the k smallest cosine distances per row of a B×K similarity matrix → B."""
    nearest = similarities.topk(k, dim=1, largest=True, sorted=False).values  # B×k
    return (1.0 - nearest).clamp_min(0.0).mean(dim=1)
