"""Exact Euclidean nearest-neighbour distances: faiss for large CPU searches, torch otherwise.

Both backends search exhaustively: faiss (``IndexFlatL2``, BLAS, its own threads) pays off when
queries × bank is large; a torch matrix product in query chunks of bounded memory serves small
searches and tensors on an accelerator, where faiss-cpu cannot go. The distances of the k found
neighbours are then recomputed directly, so both backends return the same float32 values.
``exact_distances`` is the torch search in one piece, with nothing but tensor operations: what
a traced graph (the ONNX export) runs.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Backend = Literal["auto", "faiss", "torch"]
BACKENDS = ("auto", "faiss", "torch")
FAISS_MIN_PAIRS = 5_000_000  # queries × bank above which "auto" uses faiss (CPU tensors only)
MAX_DISTANCES = 1 << 24  # query×bank distances held at once by the torch backend (64 MiB)


class NearestNeighbourIndex:
    """A bank of K×C vectors searched many times; the faiss index is built once, when needed.

    Args:
        bank: K×C vectors (any float dtype), kept as float32 on their device.
        backend: ``"auto"`` (faiss when queries × K > ``FAISS_MIN_PAIRS`` and the bank is on
            the CPU, torch otherwise), ``"faiss"`` or ``"torch"``.
    """

    def __init__(self, bank: Tensor, *, backend: Backend = "auto") -> None:
        if bank.ndim != 2 or bank.shape[0] == 0 or bank.shape[1] == 0:
            raise ValueError(f"bank must be K×C with K, C >= 1, got shape {tuple(bank.shape)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.bank = bank.detach().float().contiguous()  # K×C
        self.backend = backend
        self._faiss_index: Any = None  # built on the first faiss search
        self._squared_norms: Tensor | None = None  # K, on the first torch search

    def search(self, queries: Tensor, k: int = 1, *, exclude: Tensor | None = None) -> Tensor:
        """Distances from each query to its k nearest bank vectors.

        Args:
            queries: M×C vectors.
            k: the number of neighbours, 1 <= k <= the number of bank vectors searched.
            exclude: K bools, true for the bank vectors no query may match (searched with
                torch, the excluded distances masked out).

        Returns:
            M×k float32 Euclidean distances, ascending along each row, on the queries' device.
        """
        K, C = self.bank.shape
        if queries.ndim != 2 or queries.shape[1] != C:
            raise ValueError(f"queries must be M×{C}, got shape {tuple(queries.shape)}")
        if exclude is not None and exclude.shape != (K,):
            raise ValueError(f"exclude must be {K} bools, got shape {tuple(exclude.shape)}")
        searched = K - (int(exclude.sum()) if exclude is not None else 0)
        if not 1 <= k <= searched:
            raise ValueError(
                f"k must be between 1 and the {searched} bank vectors searched, got {k}"
            )
        q = queries.detach().to(device=self.bank.device, dtype=torch.float32)  # M×C
        if exclude is None and self._uses_faiss(q.shape[0]):
            indices = self._faiss_neighbours(q, k)
        else:
            indices = self._torch_neighbours(q, k, exclude)
        return self._distances_to(q, indices).to(queries.device)

    def _uses_faiss(self, n_queries: int) -> bool:
        if self.backend != "auto":
            return self.backend == "faiss"
        return self.bank.device.type == "cpu" and n_queries * self.bank.shape[0] > FAISS_MIN_PAIRS

    def _torch_neighbours(self, q: Tensor, k: int, exclude: Tensor | None = None) -> Tensor:
        """M×k bank indices ranked by |b|² - 2q·b (= squared distance - |q|²), in query chunks;
        ``exclude``d bank rows ranked last."""
        if self._squared_norms is None:
            self._squared_norms = (self.bank * self.bank).sum(dim=1)  # K
        norms = self._squared_norms
        if exclude is not None:
            norms = norms.masked_fill(exclude.to(norms.device), float("inf"))
        chunk = max(1, MAX_DISTANCES // self.bank.shape[0])
        parts = [rank_neighbours(part, self.bank, norms, k) for part in q.split(chunk)]
        return torch.cat(parts) if parts else q.new_zeros(0, k, dtype=torch.int64)

    def _faiss_neighbours(self, q: Tensor, k: int) -> Tensor:
        """M×k bank indices from the faiss index (its squared distances are recomputed)."""
        if self._faiss_index is None:
            self._faiss_index = _build_faiss_index(self.bank)
        _, indices = self._faiss_index.search(_as_faiss_array(q), k)  # M×k int64
        return torch.from_numpy(indices).to(self.bank.device)

    def _distances_to(self, q: Tensor, indices: Tensor) -> Tensor:
        """Euclidean distances of M×C queries to their M×k neighbours by direct differences.

        Both searches rank by ``|q|² + |b|² - 2q·b``, whose cancellation leaves an error of
        about sqrt(eps)·|q| on small distances; recomputing the k found ones as ``|q - b|``
        makes a bank vector's distance to itself exactly 0 and the two backends agree.
        """
        k, C = indices.shape[1], q.shape[1]
        chunk = max(1, MAX_DISTANCES // (k * C))
        parts = [
            neighbour_distances(part, self.bank, idx).sort(dim=1).values
            for part, idx in zip(q.split(chunk), indices.split(chunk), strict=True)
        ]
        return torch.cat(parts) if parts else q.new_zeros(0, k)


def rank_neighbours(queries: Tensor, bank: Tensor, squared_norms: Tensor, k: int) -> Tensor:
    """Indices of the k nearest of K×C ``bank`` vectors for M×C queries → M×k (any order).

    Ranks by |b|² - 2q·b (the squared distance less |q|², which every bank vector shares);
    ``squared_norms`` (K) are the bank's |b|², inf where a vector must not be matched.
    """
    ranking = torch.addmm(squared_norms, queries, bank.T, alpha=-2.0)  # M×K
    return ranking.topk(k, dim=1, largest=False, sorted=False).indices


def neighbour_distances(queries: Tensor, bank: Tensor, indices: Tensor) -> Tensor:
    """|q - b| of M×C queries to their M×k neighbours ``bank[indices]`` → M×k, by differences."""
    return torch.linalg.vector_norm(queries[:, None, :] - bank[indices], dim=2)


def exact_distances(queries: Tensor, bank: Tensor, k: int) -> Tensor:
    """The torch search in one piece: distances of M×C queries to their k nearest of K×C
    ``bank`` vectors → M×k (any order), tensor operations only, so that it traces."""
    squared_norms = (bank * bank).sum(dim=1)  # K
    return neighbour_distances(queries, bank, rank_neighbours(queries, bank, squared_norms, k))


def nearest_distances(queries: Tensor, bank: Tensor, k: int = 1) -> Tensor:
    """Euclidean distances from M×C queries to their k nearest of K×C bank vectors → M×k.

    One-off search; use ``NearestNeighbourIndex`` to search one bank many times.
    """
    return NearestNeighbourIndex(bank).search(queries, k)


def _build_faiss_index(bank: Tensor) -> Any:
    import faiss  # imported when first needed: nothing heavy at import time

    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(_as_faiss_array(bank))
    logger.debug("faiss IndexFlatL2 over %d×%d vectors", *bank.shape)
    return index


def _as_faiss_array(x: Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy copy or view of a (possibly accelerator) tensor."""
    return np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy())
