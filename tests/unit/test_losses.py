import math

import pytest
import torch
import torch.nn.functional as F

from simclr_ad.losses import NTXentLoss


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Written from the SimCLR paper's pseudocode, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = [torch.dot(z[i], z[k]) / temperature for k in range(2 * n)]
        denominator = sum(torch.exp(sims[k]) for k in range(2 * n) if k != i)
        losses.append(-torch.log(torch.exp(sims[positive]) / denominator))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_matches_naive_reference(temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    expected = naive_nt_xent(z1.double(), z2.double(), temperature)
    assert NTXentLoss(temperature)(z1, z2).item() == pytest.approx(expected.item(), rel=1e-5)


def test_identical_embeddings_give_closed_form() -> None:
    # all similarities equal: loss = -log(1 / (2N - 1)) = log(2N - 1)
    n = 4
    z = torch.ones(n, 3)
    assert NTXentLoss(0.5)(z, z).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_perfect_pairs_approach_zero_at_low_temperature() -> None:
    z = torch.eye(4)  # pairs identical, orthogonal to every negative
    assert NTXentLoss(0.01)(z, z.clone()).item() < 1e-6


def test_scale_invariant() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    loss = NTXentLoss(0.2)
    assert loss(z1, z2).item() == pytest.approx(loss(3 * z1, 0.5 * z2).item(), rel=1e-5)


def test_gradient_steps_decrease_loss() -> None:
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(8, 4, generator=g, requires_grad=True)
    z2 = torch.randn(8, 4, generator=g, requires_grad=True)
    loss_fn = NTXentLoss(0.5)
    optimizer = torch.optim.SGD([z1, z2], lr=0.5)
    first = loss_fn(z1, z2).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss_fn(z1, z2).backward()
        optimizer.step()
    assert loss_fn(z1, z2).item() < first - 0.5


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ValueError, match="shape"):
        NTXentLoss()(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        NTXentLoss()(torch.zeros(1, 2), torch.zeros(1, 2))
