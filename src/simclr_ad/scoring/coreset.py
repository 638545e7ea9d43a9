"""Approximate greedy k-center coreset selection (PatchCore, Roth et al. 2022).

The memory bank keeps the patches that best cover all training patches: starting from one
random patch, repeatedly add the patch farthest from everything selected so far. Distances are
measured after a random Gaussian projection to a few dimensions, which preserves them well
(Johnson-Lindenstrauss) and makes each step one P-vector of distances.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def greedy_coreset(features: Tensor, n: int, *, projection_dim: int = 128, seed: int = 0) -> Tensor:
    """Indices of ``min(n, P)`` distinct patches chosen by greedy k-center selection.

    Args:
        features: P×C patch features (any float dtype and device).
        n: the number of patches to keep, >= 1.
        projection_dim: dimension of the random projection; skipped when C <= projection_dim.
        seed: seeds the projection and the first patch; equal seeds give equal indices.

    Returns:
        ``min(n, P)`` int64 indices into ``features`` (CPU), in selection order.

    Raises:
        ValueError: for a non P×C input, an empty one, n < 1 or projection_dim < 1.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be P×C with P >= 1, got shape {tuple(features.shape)}")
    if n < 1 or projection_dim < 1:
        raise ValueError(f"n and projection_dim must be >= 1, got {n} and {projection_dim}")
    P = features.shape[0]
    generator = torch.Generator().manual_seed(seed)
    x = _project(features.detach().float(), projection_dim=projection_dim, generator=generator)
    first = int(torch.randint(P, (1,), generator=generator))
    indices = _farthest_point_sampling(x, n=min(n, P), first=first)
    logger.debug("coreset: kept %d of %d patches", len(indices), P)
    return indices.cpu()


def _project(x: Tensor, *, projection_dim: int, generator: torch.Generator) -> Tensor:
    """P×C → P×projection_dim through a seeded Gaussian matrix (unchanged if C is smaller)."""
    if x.shape[1] <= projection_dim:
        return x.contiguous()
    matrix = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim**0.5
    return x @ matrix.to(x.device)


def _farthest_point_sampling(x: Tensor, *, n: int, first: int) -> Tensor:
    """Greedy k-center on P×d ``x``: n indices, each the farthest from those before it.

    The squared distance of every point to the newest centre is ``|x|² - 2 x·c + |c|²``: one
    matrix-vector product per step, folded into the running minimum in place. Indices stay
    tensors on ``x``'s device, so an accelerator never waits for the host between steps.
    """
    squared_norms = (x * x).sum(dim=1)  # P
    min_distances = torch.full_like(squared_norms, float("inf"))  # to the selected set
    distances = torch.empty_like(squared_norms)
    selected = torch.empty(n, dtype=torch.int64, device=x.device)
    selected[0] = first
    for step in range(1, n):
        newest = selected[step - 1]
        torch.mv(x, x[newest], out=distances)
        distances.mul_(-2.0).add_(squared_norms).add_(squared_norms[newest])
        torch.minimum(min_distances, distances, out=min_distances)
        min_distances[newest] = float("-inf")  # never again, even among exact duplicates
        selected[step] = min_distances.argmax()
    return selected
