"""Cosine scorer: angle to the mean direction of the training features."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from simclr_ad.scoring.base import GlobalScorer


class CosineScorer(GlobalScorer):
    """Score = 1 - cos(x, c), c the mean of the L2-normalised training features (0 to 2)."""

    kind: ClassVar[str] = "cosine"
    state_names: ClassVar[tuple[str, ...]] = ("center",)  # D, unit length

    def params(self) -> dict[str, Any]:
        """No hyper-parameters: ``{}``."""
        return {}

    def _fit(self, features: Tensor) -> dict[str, Tensor]:
        center = F.normalize(features.double(), dim=1).mean(dim=0)  # D
        if float(center.norm()) < 1e-12:
            raise ValueError("the normalised training features average to zero: no mean direction")
        return {"center": F.normalize(center, dim=0)}

    def _check_state(self, state: dict[str, Tensor]) -> None:
        super()._check_state(state)
        if state["center"].ndim != 1:
            raise ValueError(f"cosine state: center must be D, got {tuple(state['center'].shape)}")

    def _score(self, features: Tensor) -> Tensor:
        center = self._state["center"]
        x = F.normalize(features.to(center.dtype), dim=1)  # M×D
        return (1.0 - x @ center).clamp(0.0, 2.0)
