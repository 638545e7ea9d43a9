"""Mahalanobis scorer against the closed form and a Ledoit-Wolf reference from the paper."""

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from simclr_ad.scoring.mahalanobis import MahalanobisScorer


def correlated_features(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


def naive_ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit & Wolf (2004), Lemma 3.2-3.4, with the scaled norm ‖A‖² = tr(AAᵀ)/p."""
    n, p = x.shape
    centered = x - x.mean(axis=0)
    sample = centered.T @ centered / n
    norm2 = lambda a: np.trace(a @ a.T) / p  # noqa: E731
    m = np.trace(sample) / p
    d2 = norm2(sample - m * np.eye(p))
    b2_bar = sum(norm2(np.outer(row, row) - sample) for row in centered) / n**2
    b2 = min(b2_bar, d2)
    return (b2 / d2) * m * np.eye(p) + (1 - b2 / d2) * sample


def closed_form(x: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    d = x - mean
    return np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(covariance), d))


def test_ledoit_wolf_reference_matches_sklearn() -> None:
    x = correlated_features(40, 6, seed=0)
    assert np.allclose(naive_ledoit_wolf(x), LedoitWolf().fit(x).covariance_, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "pinv"])
def test_scores_equal_closed_form(covariance: str) -> None:
    train, test = correlated_features(60, 5, seed=1), correlated_features(9, 5, seed=2)
    # "pinv": the write-up's empirical covariance (unbiased)
    sigma = naive_ledoit_wolf(train) if covariance == "ledoit_wolf" else np.cov(train.T)
    expected = closed_form(test, train.mean(axis=0), sigma)
    scorer = MahalanobisScorer(covariance=covariance).fit(torch.from_numpy(train))  # float64
    scores = scorer.score(torch.from_numpy(test)).numpy()
    assert np.allclose(scores, expected, rtol=1e-6)  # float32 output


def test_stored_precision_inverts_sklearn_covariance() -> None:
    train = correlated_features(30, 4, seed=3)
    state = MahalanobisScorer().fit(torch.from_numpy(train)).state_dict()
    assert state["precision"].dtype == torch.float64
    covariance = LedoitWolf().fit(train).covariance_
    assert np.allclose(np.linalg.inv(state["precision"].numpy()), covariance, rtol=1e-8)
    assert np.allclose(state["mean"].numpy(), train.mean(axis=0))


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "pinv"])
def test_fewer_images_than_dimensions_stay_finite(covariance: str) -> None:
    train = torch.randn(10, 32, generator=torch.Generator().manual_seed(0))
    scores = MahalanobisScorer(covariance=covariance).fit(train).score(torch.randn(5, 32))
    assert torch.isfinite(scores).all() and (scores >= 0).all()


def test_single_training_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        MahalanobisScorer().fit(torch.randn(1, 4))


def test_unknown_covariance_is_rejected() -> None:
    with pytest.raises(ValueError, match="ledoit_wolf, pinv"):
        MahalanobisScorer(covariance="oas")
