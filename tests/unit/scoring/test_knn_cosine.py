"""kNN and cosine scorers against hand-computed cosine distances."""

import logging
import math

import pytest
import torch

from simclr_ad.scoring import knn as knn_module
from simclr_ad.scoring.cosine import CosineScorer
from simclr_ad.scoring.knn import KNNScorer


def test_knn_k1_is_zero_on_training_points() -> None:
    train = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    scores = KNNScorer(k=1).fit(train).score(train)
    assert torch.allclose(scores, torch.zeros(30), atol=1e-6)


def test_knn_hand_made_distances() -> None:
    scorer = KNNScorer(k=1).fit(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    queries = torch.tensor([[1.0, 1.0], [5.0, 0.0], [-1.0, 0.0], [1.0, -1.0]])
    expected = [1 - 1 / math.sqrt(2), 0.0, 1.0, 1 - 1 / math.sqrt(2)]
    assert scorer.score(queries).tolist() == pytest.approx(expected, abs=1e-6)


def test_knn_mean_over_k() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # distances of (1, 0): 0, 1, 2 → k=2: 0.5, k=3: 1.0
    assert KNNScorer(k=2).fit(train).score(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)
    assert KNNScorer(k=3).fit(train).score(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)


def test_knn_k_larger_than_training_set_uses_all(caplog: pytest.LogCaptureFixture) -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with caplog.at_level(logging.WARNING):
        scorer = KNNScorer(k=10).fit(train)
    assert "exceeds" in caplog.text
    assert scorer.score(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)


def test_knn_chunked_search_equals_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(40, 5, generator=g), torch.randn(23, 5, generator=g)
    expected = KNNScorer(k=3).fit(train).score(test)
    monkeypatch.setattr(knn_module, "MAX_SIMILARITIES", 40 * 4)  # chunks of 4 queries
    assert torch.allclose(KNNScorer(k=3).fit(train).score(test), expected)


def test_cosine_closed_form() -> None:
    # normalised training features (1, 0), (0, 1): mean direction (1, 1)/√2
    scorer = CosineScorer().fit(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    queries = torch.tensor([[2.0, 2.0], [1.0, 0.0], [-1.0, -1.0], [1.0, -1.0]])
    expected = [0.0, 1 - 1 / math.sqrt(2), 2.0, 1.0]
    assert scorer.score(queries).tolist() == pytest.approx(expected, abs=1e-6)


def test_cosine_rejects_features_without_mean_direction() -> None:
    with pytest.raises(ValueError, match="zero"):
        CosineScorer().fit(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "5"])
def test_knn_rejects_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="k must be"):
        KNNScorer(k=k)  # type: ignore[arg-type]
