import math

import pytest
import torch
import torch.nn.functional as F

from simclr_ad.losses import MeanShiftedContrastiveLoss, NTXentLoss


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


def _msc(centre: torch.Tensor, **kwargs) -> MeanShiftedContrastiveLoss:
    return MeanShiftedContrastiveLoss(centre, **kwargs)


def test_msc_identical_views_beat_unrelated_ones() -> None:
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(16, generator=g)
    h = centre + 0.3 * torch.randn(8, 16, generator=g)  # features clustered around the centre
    other = centre + 0.3 * torch.randn(8, 16, generator=g)
    loss = _msc(centre)
    assert loss(h, h) < loss(h, other)


def test_msc_is_ntxent_on_features_shifted_by_the_fixed_centre() -> None:
    g = torch.Generator().manual_seed(1)
    centre = torch.randn(10, generator=g)
    h1, h2 = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    c = F.normalize(centre, dim=0)

    def shift(h: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.normalize(h, dim=1) - c, dim=1)

    loss = _msc(3.0 * centre, temperature=0.25)  # the centre's norm does not matter
    expected = NTXentLoss(0.25, gather_distributed=False)(shift(h1), shift(h2))
    assert torch.allclose(loss(h1, h2), expected, atol=1e-6)
    assert torch.allclose(loss.shift(h1), shift(h1), atol=1e-6)
    # a feature orthogonal to the centre is shifted to cos(shifted, c) = -1/sqrt(2) (closed form)
    u = torch.randn(10, generator=g)
    u = F.normalize(u - (u @ c) * c, dim=0)
    assert torch.allclose(loss.shift(u.unsqueeze(0)) @ c, torch.tensor([-(0.5**0.5)]), atol=1e-6)
    assert not list(loss.parameters()) and "centre" in loss.state_dict()  # fixed, saved


def test_msc_angular_term_closed_form() -> None:
    g = torch.Generator().manual_seed(2)
    centre = torch.randn(8, generator=g)
    h1, h2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    c = F.normalize(centre, dim=0)
    plain = _msc(centre)(h1, h2)
    with_term = _msc(centre, angular_weight=0.5)(h1, h2)
    spread = sum((2 - 2 * F.normalize(h, dim=1) @ c).mean() for h in (h1, h2))
    assert torch.allclose(with_term - plain, 0.5 * spread, atol=1e-5)
    with pytest.raises(ValueError, match="angular_weight"):
        _msc(centre, angular_weight=-1.0)
