"""Patch-feature variants on one real category, scored from cached backbone maps (research).

Usage:
    .venv/bin/python benchmarks/patch_variants.py --category kolektorsdd --cache /tmp/kol.pt
    .venv/bin/python benchmarks/patch_variants.py --category kolektorsdd --cache /tmp/kol.pt \\
        --variants '[{"tag": "std", "std": true, "candidates": 10000, "coreset": 1.0}]'

The maps of timm's ``efficientnet_lite0`` (ImageNet weights from ``../shared``; ``--backbone
tf_efficientnet_lite0`` loads them into timm's TensorFlow-style twin, 0.5/0.5 normalisation and
"same" padding) at stride 4, 8 and 16 are computed once for ``train/good`` and ``test/*`` at
the category's input shape (as ``data.shape.choose_shape`` picks it), with the pipeline's
photometric ``gain``, and cached;
each variant then builds PatchCore-style features on the stride-8 grid (the stages it names,
each averaged over a ``neighbourhood`` window), a bank from at most ``candidates`` random
training patches (greedy coreset of ``coreset`` of them, 1.0 keeps all), the project's
``PatchScorer`` maps and both score rules, and prints the test AUROC and TPR at 1% / 5% FPR.
``std`` standardises every channel by the candidates' mean and standard deviation.

These are test-split figures for choosing what to build, never a setting chosen for a user.
"""

from __future__ import annotations

# isort: split
import simclr_ad  # noqa: F401  # sets OMP_WAIT_POLICY before torch starts its threads

# isort: split
import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from simclr_ad.data.mvtec import GOOD, Sample, list_images
from simclr_ad.data.shape import choose_shape
from simclr_ad.data.store import decode_images
from simclr_ad.metrics import tpr_at_fpr
from simclr_ad.preprocessing import Normalization, Photometric
from simclr_ad.scoring.patch import PatchScorer

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "efficientnet_lite0_imagenet.safetensors"
STAGES = (1, 2, 3)  # efficientnet_lite0's feature_info: stride 4, 8, 16
GRID = 2  # features on the stride-8 grid, as the pipeline's


def cache_maps(
    root: Path, category: str, image_size: int, backbone: str, out: Path
) -> dict[str, Any]:
    """Stage maps (float16) of train/good and test/* at the category's input shape, the images
    normalised with ``backbone``'s mean/std (the shared weights load into either timm name)."""
    base = root / category
    train = [Sample(p, category, GOOD, 0) for p in list_images(base / "train" / GOOD)]
    test = [
        Sample(p, category, d.name, int(d.name != GOOD))
        for d in sorted((base / "test").iterdir())
        for p in list_images(d)
    ]
    shape = choose_shape(train, image_size, "auto")
    model = timm.create_model(backbone, pretrained=False)
    model.load_state_dict(load_file(str(WEIGHTS)))
    model.eval()
    train_px = decode_images(train, shape).pixels
    norm = Normalization.for_backbone(backbone)
    correct = Photometric.fit("gain", train_px).as_module(norm)  # the pipeline's default

    def maps(pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, list[torch.Tensor]] = {s: [] for s in STAGES}
        for start in range(0, pixels.shape[0], 16):
            with torch.no_grad():
                stage_maps = model.forward_intermediates(
                    correct(norm(pixels[start : start + 16])),
                    indices=list(STAGES),
                    intermediates_only=True,
                )
            for s, m in zip(STAGES, stage_maps, strict=True):
                out[s].append(m.half())
        return {s: torch.cat(v) for s, v in out.items()}

    data = {
        "train": maps(train_px),
        "test": maps(decode_images(test, shape).pixels),
        "labels": torch.tensor([s.label for s in test]),
        "shape": shape,
    }
    torch.save(data, out)
    return data


def features(
    maps: dict[int, torch.Tensor], stages: tuple[int, ...], neighbourhood: int, grid: int = GRID
):
    """Stage maps -> N×C×h×w on the grid of stage ``grid`` (the stride-8 one unless told; finer
    stages average-pooled down, coarser ones upsampled)."""
    size = maps[grid].shape[-2:]
    out = []
    for s in stages:
        m = maps[s].float()
        if neighbourhood > 1:
            pad = neighbourhood // 2
            m = F.avg_pool2d(m, neighbourhood, 1, padding=pad, count_include_pad=False)
        if m.shape[-2] > size[0]:
            m = F.adaptive_avg_pool2d(m, size)
        elif m.shape[-2] < size[0]:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        out.append(m)
    return torch.cat(out, dim=1)


def run_variant(
    data: dict[str, Any],
    *,
    tag: str,
    stages: tuple[int, ...] = (2, 3),
    neighbourhood: int = 3,
    candidates: int = 100_000,
    coreset: float = 0.1,
    std: bool = False,
) -> dict[str, Any]:
    """Test AUROC and TPR@1%/5% of one variant under both score rules."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    n_train = data["train"][GRID].shape[0]
    chosen = []
    for i in range(0, n_train, 16):
        f = features({s: m[i : i + 16] for s, m in data["train"].items()}, stages, neighbourhood)
        flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        per_image = min(f.shape[-2] * f.shape[-1], math.ceil(candidates / n_train))
        keep = torch.randperm(flat.shape[0], generator=generator)[: per_image * f.shape[0]]
        chosen.append(flat[keep])
    bank = torch.cat(chosen)
    mean, scale = bank.mean(0), bank.std(0).clamp_min(1e-6)
    if std:
        bank = (bank - mean) / scale
    scorer = PatchScorer(coreset_ratio=coreset, k=1, sigma=4.0).fit(bank)
    maps = []
    for i in range(0, len(data["labels"]), 8):
        f = features({s: m[i : i + 8] for s, m in data["test"].items()}, stages, neighbourhood)
        if std:
            f = (f - mean.view(1, -1, 1, 1)) / scale.view(1, -1, 1, 1)
        maps.append(scorer.anomaly_maps(f, data["shape"]))
    all_maps = torch.cat(maps)
    labels = data["labels"].numpy()
    row: dict[str, Any] = {"tag": tag, "bank": int(scorer.bank.shape[0])}
    for rule in ("max", "topk_mean"):
        scorer.score_rule = rule
        scores = scorer.image_scores(all_maps).numpy()
        tpr = tpr_at_fpr(scores, labels, (0.01, 0.05))
        row[rule] = {
            "auroc": round(float(roc_auc_score(labels, scores)), 3),
            "tpr_at_1": round(tpr["0.01"], 3),
            "tpr_at_5": round(tpr["0.05"], 3),
        }
    row["seconds"] = round(time.perf_counter() - start)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "real")
    parser.add_argument("--category", default="kolektorsdd")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="timm name of the weights")
    parser.add_argument("--cache", type=Path, required=True, help="stage maps (made if missing)")
    parser.add_argument("--variants", default='[{"tag": "base"}]', help="JSON list of variants")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = (
        torch.load(args.cache)
        if args.cache.exists()
        else cache_maps(args.data, args.category, args.image_size, args.backbone, args.cache)
    )
    for variant in json.loads(args.variants):
        if "stages" in variant:
            variant["stages"] = tuple(variant["stages"])
        print(json.dumps(run_variant(data, **variant)), flush=True)


if __name__ == "__main__":
    main()
