"""Scorers for aligned parts on one real category, from cached stage maps (research).

Usage:
    .venv/bin/python benchmarks/aligned_scorers.py --category kolektorsdd --cache /tmp/kol.pt
    .venv/bin/python benchmarks/aligned_scorers.py --cache /tmp/kol.pt --radii 0,1 --padim ''

Where every image shows the part in the same place (kolektorsdd's commutator bars), a patch
could be compared with the good patches at its own position only. Two ways, beside the
project's memory bank (``positional.py``'s half split: features of the even-numbered training
images fit, the odd-numbered ones give the statistics and the threshold, the test split is
scored):

- **position-conditioned nearest neighbour**: a patch's distance to the nearest even-image
  patch within ``radius`` cells of its own position (0: the same cell), over every even image;
- **PaDiM** (Defard et al. 2021): a Gaussian per position, the even images' mean and covariance
  there (shrunk towards a multiple ``eps`` of the mean variance), the patch's Mahalanobis
  distance.

Each map is upsampled and smoothed as the project's, scored by the top-1% mean, plain and
standardised per position (``scoring.patch.PositionStats`` of the odd images' maps, which
include themselves, as ``positional.py``'s in-sample thresholds). Prints the test AUROC, TPR
at 1% / 5% FPR, and recall and false-alarm rate at the threshold calibrated on the odd images.
Test-split figures for choosing what to build, never a setting chosen for a user.
"""

from __future__ import annotations

# isort: split
import simclr_ad  # noqa: F401  # sets OMP_WAIT_POLICY before torch starts its threads

# isort: split
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from patch_variants import SHARED, cache_maps, features
from positional import figures
from simclr_ad.scoring.patch import PatchScorer, PositionStats, gaussian_blur, standardise


def half_features(data: dict, stages: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Stride-8 features (float32) of the even and the odd training images and of the test."""
    n = data["train"][2].shape[0]

    def feats(split: str, rows: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                features({s: m[rows[i : i + 16]] for s, m in data[split].items()}, stages, 3)
                for i in range(0, len(rows), 16)
            ]
        )

    tests = torch.arange(len(data["labels"]))
    return (
        feats("train", torch.arange(0, n, 2)),
        feats("train", torch.arange(1, n, 2)),
        feats("test", tests),
    )


def to_maps(distances: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """N×h×w patch distances -> N×H×W maps, upsampled and smoothed as the project's (σ 4)."""
    maps = F.interpolate(distances[:, None], size=shape, mode="bilinear", align_corners=False)
    return gaussian_blur(maps[:, 0], sigma=4.0)


def conditioned_distances(bank: torch.Tensor, queries: torch.Tensor, radius: int) -> torch.Tensor:
    """Each query patch's distance to the nearest bank patch within ``radius`` cells of its
    position, over all bank images (n×C×h×w bank, q×C×h×w queries -> q×h×w)."""
    bank_norms = (bank**2).sum(1)
    query_norms = (queries**2).sum(1)
    best = torch.full(query_norms.shape, float("inf"))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = torch.roll(bank, shifts=(dy, dx), dims=(2, 3))
            norms = torch.roll(bank_norms, shifts=(dy, dx), dims=(1, 2))
            for i in range(0, queries.shape[0], 16):
                dots = torch.einsum("nchw,qchw->qnhw", shifted, queries[i : i + 16])
                squared = (norms[None] - 2 * dots + query_norms[i : i + 16, None]).amin(1)
                best[i : i + 16] = torch.minimum(best[i : i + 16], squared)
    return best.clamp_min(0).sqrt()


def padim_distances(bank: torch.Tensor, eps: float, *queries: torch.Tensor) -> list[torch.Tensor]:
    """Mahalanobis distances (q×h×w per query set) to a Gaussian per position of the n×C×h×w
    bank, its covariance plus ``eps`` × its mean variance on the diagonal."""
    n, c, h, w = bank.shape
    mean = bank.mean(0)
    centred = (bank - mean).permute(2, 3, 0, 1).reshape(h * w, n, c)
    covariance = centred.transpose(1, 2) @ centred / (n - 1)
    shrink = eps * covariance.diagonal(dim1=1, dim2=2).mean(1)
    lower = torch.linalg.cholesky(covariance + shrink[:, None, None] * torch.eye(c))
    out = []
    for q in queries:
        rows = []
        for i in range(0, q.shape[0], 8):
            d = (q[i : i + 8] - mean).permute(2, 3, 1, 0).reshape(h * w, c, -1)
            z = torch.linalg.solve_triangular(lower, d, upper=False)
            rows.append((z**2).sum(1).sqrt().T.reshape(-1, h, w))
        out.append(torch.cat(rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "real")
    parser.add_argument("--category", default="kolektorsdd")
    parser.add_argument("--cache", type=Path, required=True, help="stage maps (made if missing)")
    parser.add_argument("--radii", default="0,1", help="position-conditioned radii, in cells")
    parser.add_argument("--padim", default="0.01,0.1", help="PaDiM shrinkage eps values")
    args = parser.parse_args()
    data = (
        torch.load(args.cache, weights_only=False)
        if args.cache.exists()
        else cache_maps(args.data, args.category, 512, "efficientnet_lite0", args.cache)
    )
    labels = data["labels"].numpy()
    shape = tuple(data["shape"])
    bank, good, test = half_features(data, (2, 3))
    variants: list[tuple[str, object]] = [
        (f"conditioned, radius {r}", int(r)) for r in args.radii.split(",") if r
    ] + [(f"padim, eps {e}", float(e)) for e in args.padim.split(",") if e]
    rule = PatchScorer()  # the top-1% mean of a map
    for name, value in variants:
        started = time.perf_counter()
        if name.startswith("conditioned"):
            distances = [conditioned_distances(bank, q, int(value)) for q in (good, test)]
        else:
            distances = padim_distances(bank, float(value), good, test)
        good_maps, test_maps = (to_maps(d, shape) for d in distances)
        mean, scale = PositionStats.of([good_maps]).moments()
        for positional in (False, True):
            g, t = good_maps, test_maps
            if positional:
                g, t = standardise(g, mean, scale), standardise(t, mean, scale)
            row = figures(rule.image_scores(g), rule.image_scores(t), labels)
            tags = {"category": args.category, "scorer": name, "positional": positional}
            seconds = round(time.perf_counter() - started)
            print(json.dumps(tags | row | {"seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
