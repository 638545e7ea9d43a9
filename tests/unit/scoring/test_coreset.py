"""Greedy k-center coreset: count, distinctness, determinism, outliers, a naive reference."""

import pytest
import torch

from simclr_ad.scoring.coreset import greedy_coreset


def naive_k_center(x: torch.Tensor, n: int, first: int) -> list[int]:
    """Written from the algorithm: add the point whose nearest selected point is farthest."""
    selected = [first]
    while len(selected) < n:
        to_selected = torch.cdist(x.double(), x[selected].double()).min(dim=1).values
        to_selected[selected] = -1.0
        selected.append(int(to_selected.argmax()))
    return selected


def features(p: int, c: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(p, c, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("p", "n"), [(100, 1), (100, 10), (100, 100), (20, 50)])
def test_returns_min_n_p_distinct_indices(p: int, n: int) -> None:
    indices = greedy_coreset(features(p, 8), n)
    assert indices.dtype == torch.int64 and indices.shape == (min(n, p),)
    assert len(set(indices.tolist())) == min(n, p)
    assert int(indices.min()) >= 0 and int(indices.max()) < p


def test_deterministic_for_a_seed() -> None:
    x = features(300, 200)  # projected: C > projection_dim
    a = greedy_coreset(x, 30, projection_dim=16, seed=3)
    assert torch.equal(a, greedy_coreset(x, 30, projection_dim=16, seed=3))
    assert not torch.equal(a, greedy_coreset(x, 30, projection_dim=16, seed=4))


def test_matches_naive_k_center_without_projection() -> None:
    x = features(200, 6)
    indices = greedy_coreset(x, 25)  # C <= projection_dim: exact distances
    assert indices.tolist() == naive_k_center(x, n=25, first=int(indices[0]))


@pytest.mark.parametrize("c", [8, 384])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keeps_an_isolated_far_point_early(c: int, seed: int) -> None:
    x = features(500, c, seed=seed)
    x[123] = 50.0  # far from the Gaussian cloud
    indices = greedy_coreset(x, 5, seed=seed).tolist()
    assert 123 in indices[:2]  # the first pick, or the farthest from a random first pick


def test_exact_duplicates_still_give_distinct_indices() -> None:
    x = torch.ones(40, 3)
    x[:5] = 0.0
    indices = greedy_coreset(x, 12)
    assert len(set(indices.tolist())) == 12


@pytest.mark.parametrize(
    ("shape", "n", "projection_dim"),
    [((0, 4), 1, 128), ((5,), 1, 128), ((5, 4), 0, 128), ((5, 4), 2, 0)],
)
def test_bad_arguments_raise(shape: tuple[int, ...], n: int, projection_dim: int) -> None:
    with pytest.raises(ValueError):
        greedy_coreset(torch.zeros(shape), n, projection_dim=projection_dim)
