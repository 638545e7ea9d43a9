"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

For a batch of N pairs (z1_i, z2_i), each of the 2N embeddings is an anchor whose positive is
its pair and whose negatives are the other 2N-2 embeddings:

    l(i) = -log( exp(sim(i, p(i)) / T) / sum_{k != i} exp(sim(i, k) / T) ),   sim = cosine

and the loss is the mean of l over all 2N anchors. Under ``torch.distributed`` the embeddings of
every rank are gathered *with gradients*, so the negatives span the global batch; each rank then
averages over its own anchors and DistributedDataParallel's gradient averaging makes the update
equal to the single-process one on the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns each rank the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> tuple[Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tensor:
        stacked = torch.stack(grads)  # world×B×D: every rank's loss's gradient for every slice
        dist.all_reduce(
            stacked
        )  # all_reduce rather than reduce_scatter: gloo has no reduce_scatter
        return stacked[dist.get_rank()]


def _gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x`` (B×D) from all ranks with gradients; returns (N×D, this rank's offset)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    parts = _GatherWithGrad.apply(x)
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


class NTXentLoss(nn.Module):
    """NT-Xent loss; takes its device from the inputs.

    Args:
        temperature: T > 0 (the write-up used 0.07).
        gather_distributed: gather negatives from all ranks when torch.distributed is running.
    """

    def __init__(self, temperature: float = 0.07, gather_distributed: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Loss for two views ``z1``, ``z2`` of shape B×D (row i of each is a positive pair)."""
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(
                "expected two B×D tensors of one shape, "
                f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
            )
        B = z1.shape[0]
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        if self.gather_distributed:
            z1_all, offset = _gather_with_grad(z1)
            z2_all, _ = _gather_with_grad(z2)
        else:
            z1_all, z2_all, offset = z1, z2, 0
        N = z1_all.shape[0]
        if N < 2:
            raise ValueError("NT-Xent needs at least 2 pairs in the (global) batch")
        anchors = torch.cat([z1, z2])  # 2B×D
        candidates = torch.cat([z1_all, z2_all])  # 2N×D
        logits = anchors @ candidates.T / self.temperature  # 2B×2N
        own = torch.arange(B, device=z1.device) + offset  # global index of each local pair
        self_index = torch.cat([own, own + N])
        positive_index = torch.cat([own + N, own])
        rows = torch.arange(2 * B, device=z1.device)
        logits[rows, self_index] = float("-inf")  # an anchor is not its own negative
        return F.cross_entropy(logits, positive_index)


class MeanShiftedContrastiveLoss(nn.Module):
    """Mean-shifted contrastive loss (Reiss & Hoshen, AAAI 2023); device from the inputs.

    With ``c`` the normalised mean of the pretrained encoder's normalised features over the
    training images (fixed before training), each feature is shifted to
    ``s(h) = normalize(normalize(h) - c)`` and NT-Xent is applied to the shifted features of the
    two views. Contrasting around the centre of the normal data, rather than around the origin,
    keeps the pretrained features from collapsing. The optional angular-centre term adds
    ``weight * mean ||normalize(h) - c||^2`` over both views (it pulls features to the centre).

    Args:
        centre: the feature centre c (C,), normalised here.
        temperature: NT-Xent temperature (0.25 in the paper).
        angular_weight: weight of the angular-centre term (0: off).
    """

    centre: Tensor

    def __init__(self, centre: Tensor, temperature: float = 0.25, angular_weight: float = 0.0):
        super().__init__()
        if centre.ndim != 1:
            raise ValueError(f"centre must be a vector, got shape {tuple(centre.shape)}")
        if angular_weight < 0:
            raise ValueError(f"angular_weight must be >= 0, got {angular_weight}")
        self.register_buffer("centre", F.normalize(centre.float(), dim=0))
        self.contrastive = NTXentLoss(temperature)
        self.angular_weight = angular_weight

    def shift(self, h: Tensor) -> Tensor:
        """B×C features -> B×C mean-shifted unit vectors."""
        return F.normalize(F.normalize(h.float(), dim=1) - self.centre, dim=1)

    def forward(self, h1: Tensor, h2: Tensor) -> Tensor:
        """Loss for two views' encoder features ``h1``, ``h2`` (B×C, row i a positive pair)."""
        loss = self.contrastive(self.shift(h1), self.shift(h2))
        if self.angular_weight > 0:
            spread = [
                (F.normalize(h.float(), dim=1) - self.centre).pow(2).sum(1).mean() for h in (h1, h2)
            ]
            loss = loss + self.angular_weight * (spread[0] + spread[1])
        return loss
