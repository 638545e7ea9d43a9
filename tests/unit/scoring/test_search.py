"""Exact nearest-neighbour distances: faiss and torch agree with a float64 brute force."""

import pytest
import torch

from simclr_ad.scoring import search as search_module
from simclr_ad.scoring.search import NearestNeighbourIndex, exact_distances, nearest_distances


def brute_force(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(
        queries.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    return distances.sort(dim=1).values[:, :k].float()


def random_pair(m: int, k: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, c, generator=g), torch.randn(k, c, generator=g)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_faiss_and_torch_agree_with_brute_force(k: int) -> None:
    queries, bank = random_pair(300, 500, 32)
    expected = brute_force(queries, bank, k)
    by_faiss = NearestNeighbourIndex(bank, backend="faiss").search(queries, k)
    by_torch = NearestNeighbourIndex(bank, backend="torch").search(queries, k)
    assert by_faiss.shape == by_torch.shape == (300, k)
    assert torch.allclose(by_faiss, by_torch, atol=1e-4)
    assert torch.allclose(by_torch, expected, atol=1e-4)
    assert (by_faiss.diff(dim=1) >= 0).all()  # ascending


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_bank_vectors_are_at_distance_exactly_zero(backend: str) -> None:
    _, bank = random_pair(1, 50, 16)
    distances = NearestNeighbourIndex(10 * bank, backend=backend).search(10 * bank, 1)  # type: ignore[arg-type]
    assert torch.equal(distances, torch.zeros(50, 1))  # no |q|² + |b|² - 2q·b cancellation


def test_auto_switches_to_faiss_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    queries, bank = random_pair(40, 60, 8)
    small = nearest_distances(queries, bank, k=2)
    index = NearestNeighbourIndex(bank)
    assert not index._uses_faiss(40)
    monkeypatch.setattr(search_module, "FAISS_MIN_PAIRS", 100)
    assert index._uses_faiss(40)
    assert torch.allclose(nearest_distances(queries, bank, k=2), small, atol=1e-4)


def test_torch_chunks_equal_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    queries, bank = random_pair(37, 20, 4)
    expected = NearestNeighbourIndex(bank, backend="torch").search(queries, 2)
    monkeypatch.setattr(search_module, "MAX_DISTANCES", 20 * 5)  # chunks of 5 queries
    chunked = NearestNeighbourIndex(bank, backend="torch").search(queries, 2)
    assert torch.allclose(chunked, expected, atol=1e-6)


def test_index_is_reused_across_searches() -> None:
    queries, bank = random_pair(10, 30, 4)
    index = NearestNeighbourIndex(bank, backend="faiss")
    first = index.search(queries, 1)
    built = index._faiss_index
    assert torch.equal(index.search(queries, 1), first) and index._faiss_index is built


@pytest.mark.parametrize(
    ("queries", "k"),
    [(torch.zeros(3, 5), 1), (torch.zeros(3), 1), (torch.zeros(3, 4), 0), (torch.zeros(3, 4), 31)],
)
def test_bad_arguments_raise(queries: torch.Tensor, k: int) -> None:
    with pytest.raises(ValueError):
        NearestNeighbourIndex(torch.zeros(30, 4)).search(queries, k)


def test_bad_bank_or_backend_raise() -> None:
    with pytest.raises(ValueError, match="bank"):
        NearestNeighbourIndex(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="backend"):
        NearestNeighbourIndex(torch.zeros(3, 4), backend="annoy")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [1, 3])
def test_exact_distances_are_the_index_search(k: int) -> None:
    """The traceable one-piece search (the ONNX graph's) returns the index's distances."""
    g = torch.Generator().manual_seed(7)
    bank, queries = torch.randn(50, 6, generator=g), torch.randn(30, 6, generator=g)
    expected = NearestNeighbourIndex(bank, backend="torch").search(queries, k)
    found = exact_distances(queries, bank, k).sort(dim=1).values
    torch.testing.assert_close(found, expected, rtol=0, atol=0)
