"""Cosine scorer: angle to the mean direction of the training features."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.scoring.base import GlobalScorer


class CosineScorer(GlobalScorer):
    """Score = 1 - cos(x, c), c the mean of the L2-normalised training features (0 to 2)."""

    kind: ClassVar[str] = "cosine"
    center: Tensor  # D, unit length (float64)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("center", torch.empty(0, dtype=torch.float64))

    def params(self) -> dict[str, Any]:
        """No hyper-parameters: ``{}``."""
        return {}

    def _fit(self, features: Tensor) -> None:
        center = F.normalize(features.double(), dim=1).mean(dim=0)  # D
        if float(center.norm()) < 1e-12:
            raise ValueError("the normalised training features average to zero: no mean direction")
        self.center = F.normalize(center, dim=0)

    def check_state(self) -> None:
        super().check_state()
        if self.center.ndim != 1:
            raise ValueError(f"cosine state: center must be D, got {tuple(self.center.shape)}")

    def forward(self, features: Tensor) -> Tensor:
        """M×D features on the centre's device -> M scores (use ``score`` for checked inputs)."""
        center = self.center
        x = F.normalize(features.to(center.dtype), dim=1)  # M×D
        return (1.0 - x @ center).clamp(0.0, 2.0)
