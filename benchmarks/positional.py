"""Map standardisations side by side on one real category, from cached stage maps (research).

Usage:
    .venv/bin/python benchmarks/positional.py --category kolektorsdd --cache /tmp/kol.pt
    .venv/bin/python benchmarks/positional.py --data ../shared/data/mvtec_ad --category screw \\
        --cache /tmp/screw.pt
    .venv/bin/python benchmarks/positional.py --cache /tmp/kol.pt --stages 1,2 --grid 1

The stage maps come from ``patch_variants.py``'s cache (made if missing). A bank is fitted on
the even-numbered training images (100,000 random patches, coreset 10%, the project's
``PatchScorer``); the odd-numbered ones are the good images whose maps give the statistics and
the threshold (``calibration.calibrate_threshold`` at 1%, as for held-out good images: the
conformal rank, or the Student-t bound for fewer than 99), the test split is scored by the same
bank. Per way of turning a map into a score it prints the test AUROC, TPR at 1% / 5% FPR, and
recall and false-alarm rate at that threshold: the plain top-1% mean and max, the maps less
their own median, and the maps standardised per position (``scoring.patch.PositionStats``:
mean and spread of the odd images' maps, pooled 8×) with and without the median.

The positional statistics include the odd images themselves, so their thresholds are in sample
(too low where few images give them: metal plates' 27); the pipeline standardises each good
image by the others' statistics. These are test-split figures for choosing what to build, never
a setting chosen for a user.
"""

from __future__ import annotations

# isort: split
import simclr_ad  # noqa: F401  # sets OMP_WAIT_POLICY before torch starts its threads

# isort: split
import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from patch_variants import GRID, SHARED, cache_maps, features
from simclr_ad.calibration import calibrate_threshold
from simclr_ad.metrics import tpr_at_fpr
from simclr_ad.scoring.patch import PatchScorer, PositionStats, standardise


def half_maps(
    data: dict, stages: tuple[int, ...], seed: int = 0, grid: int = GRID
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of the odd-numbered training images and of the test split, by a bank of the even
    (features on the grid of stage ``grid``)."""
    n = data["train"][grid].shape[0]
    even, odd = torch.arange(0, n, 2), torch.arange(1, n, 2)

    def feats(split: str, rows: torch.Tensor) -> list[torch.Tensor]:
        return [
            features({s: m[rows[i : i + 8]] for s, m in data[split].items()}, stages, 3, grid)
            for i in range(0, len(rows), 8)
        ]

    bank = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in feats("train", even)])
    keep = torch.randperm(bank.shape[0], generator=torch.Generator().manual_seed(seed))[:100_000]
    scorer = PatchScorer(coreset_ratio=0.1, k=1, sigma=4.0).fit(bank[keep])
    shape = data["shape"]
    good = torch.cat([scorer.anomaly_maps(f, shape) for f in feats("train", odd)])
    test = torch.cat(
        [scorer.anomaly_maps(f, shape) for f in feats("test", torch.arange(len(data["labels"])))]
    )
    return good, test


def figures(good: torch.Tensor, test: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Test AUROC, TPR at 1% / 5% FPR, recall and false alarms at the 1% threshold calibrated
    on the ``good`` scores."""
    threshold = calibrate_threshold(good.numpy(), 0.01).threshold
    flagged = test.numpy() >= threshold
    tpr = tpr_at_fpr(test.numpy(), labels, (0.01, 0.05))
    return {
        "auroc": round(float(roc_auc_score(labels, test.numpy())), 3),
        "tpr_at_1": round(tpr["0.01"], 3),
        "tpr_at_5": round(tpr["0.05"], 3),
        "recall": round(float(flagged[labels == 1].mean()), 3),
        "false_alarms": round(float(flagged[labels == 0].mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "real")
    parser.add_argument("--category", default="kolektorsdd")
    parser.add_argument("--cache", type=Path, required=True, help="stage maps (made if missing)")
    parser.add_argument(
        "--stages", default="2,3", help="feature_info indices: 2,3 (the pipeline's: stride 8, 16)"
    )
    parser.add_argument(
        "--grid",
        type=int,
        default=GRID,
        help="the stage whose grid the features are on: 2 "
        "(stride 8, the pipeline's) or 1 (stride 4: 4x the patches)",
    )
    args = parser.parse_args()
    stages = tuple(int(s) for s in args.stages.split(","))
    data = (
        torch.load(args.cache, weights_only=False)
        if args.cache.exists()
        else cache_maps(args.data, args.category, 512, "efficientnet_lite0", args.cache)
    )
    labels = data["labels"].numpy()
    good, test = half_maps(data, stages, grid=args.grid)
    stats = PositionStats.of([good])
    mean, scale = stats.moments()
    scorer = PatchScorer()

    def median(maps: torch.Tensor) -> torch.Tensor:
        return maps - maps.flatten(1).median(dim=1).values.view(-1, 1, 1)

    def positional(maps: torch.Tensor) -> torch.Tensor:
        return standardise(maps, mean, scale)

    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "plain": lambda m: m,
        "less median": median,
        "positional": positional,
        "positional, less median": lambda m: median(positional(m)),
    }
    for name, transform in variants.items():
        for rule in ("topk_mean", "max"):
            row = figures(
                scorer.image_scores(transform(good), rule),
                scorer.image_scores(transform(test), rule),
                labels,
            )
            tags = {"category": args.category, "stages": args.stages, "grid": args.grid}
            tags |= {"maps": name, "rule": rule}
            print(json.dumps(tags | row), flush=True)


if __name__ == "__main__":
    main()
