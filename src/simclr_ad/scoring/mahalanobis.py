"""Mahalanobis scorer: distance to a Gaussian fitted on the training features."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from simclr_ad.scoring.base import GlobalScorer
from simclr_ad.scoring.registry import COVARIANCES


class MahalanobisScorer(GlobalScorer):
    """Score = sqrt((x - μ)ᵀ Σ⁻¹ (x - μ)) with μ, Σ estimated on training features.

    Statistics are computed and kept in float64.

    Args:
        covariance: ``"ledoit_wolf"``: Ledoit-Wolf shrinkage covariance (well conditioned even
            with fewer images than dimensions), inverted; ``"pinv"``: the reference write-up's
            empirical covariance (unbiased, N-1) with its Moore-Penrose pseudo-inverse.
    """

    kind: ClassVar[str] = "mahalanobis"
    min_fit_rows: ClassVar[int] = 2
    mean: Tensor  # D (float64)
    precision: Tensor  # D×D (float64)

    def __init__(self, covariance: str = "ledoit_wolf") -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(
                f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}"
            )
        self.covariance = covariance
        self.register_buffer("mean", torch.empty(0, dtype=torch.float64))
        self.register_buffer("precision", torch.empty(0, 0, dtype=torch.float64))

    def params(self) -> dict[str, Any]:
        """The hyper-parameters: ``{"covariance": ...}``."""
        return {"covariance": self.covariance}

    def _fit(self, features: Tensor) -> None:
        x = features.detach().to(device="cpu", dtype=torch.float64)  # N×D
        if self.covariance == "ledoit_wolf":
            precision = ledoit_wolf_precision(x)
        else:
            precision = torch.linalg.pinv(torch.cov(x.T), hermitian=True)
        self.mean, self.precision = x.mean(dim=0), precision

    def check_state(self) -> None:
        super().check_state()
        D = self.mean.shape[-1]
        if self.mean.ndim != 1 or tuple(self.precision.shape) != (D, D):
            raise ValueError(
                f"mahalanobis state: expected mean D and precision D×D, got "
                f"{tuple(self.mean.shape)} and {tuple(self.precision.shape)}"
            )

    def forward(self, features: Tensor) -> Tensor:
        """M×D features on the buffers' device -> M scores (use ``score`` for checked inputs)."""
        mean, precision = self.mean, self.precision
        d = features.to(mean.dtype) - mean  # M×D
        squared = ((d @ precision) * d).sum(dim=1)  # M
        return squared.clamp_min(0.0).sqrt()


def ledoit_wolf_precision(features: Tensor) -> Tensor:
    """Inverse of scikit-learn's Ledoit-Wolf covariance of N×D features → D×D float64."""
    from sklearn.covariance import LedoitWolf  # imported when first needed (about 0.8 s)

    estimator = LedoitWolf(store_precision=True, assume_centered=False)
    estimator.fit(features.detach().cpu().double().numpy())
    return torch.from_numpy(estimator.precision_).to(torch.float64)
