"""2-D views of the embeddings for the report: PCA and t-SNE (scikit-learn)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits


class Projections(NamedTuple):
    """N×2 coordinates of the same points by PCA and by t-SNE."""

    pca: NDArray[np.float64]
    tsne: NDArray[np.float64]


def project(features: NDArray[Any], *, seed: int = 0) -> Projections:
    """PCA and t-SNE of N×C features (a few hundred points: about a second on a CPU).

    With fewer than 5 points t-SNE is not meaningful and the PCA coordinates are returned twice.
    """
    x = np.asarray(features, dtype=np.float64)
    N = x.shape[0]
    if N < 3:
        flat = np.zeros((N, 2))
        return Projections(flat, flat)
    pca = PCA(n_components=2, random_state=seed).fit_transform(x)
    if N < 5:
        return Projections(pca, pca)
    perplexity = float(min(30.0, (N - 1) / 3))
    # One thread: on a few hundred points OpenMP threads only wait for each other (10-100× slower
    # on a busy machine).
    with threadpool_limits(limits=1):
        tsne = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500
        ).fit_transform(x)
    return Projections(pca, tsne)
