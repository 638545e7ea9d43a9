"""``auto``'s synthetic judge on one category, both score rules with and without the positional
standardisation, side by side (research).

Usage:
    .venv/bin/python benchmarks/judge_defects.py --data ../shared/data/mvtec_ad --category screw
    .venv/bin/python benchmarks/judge_defects.py --category kolektorsdd [--patch-stages 1,2]

What ``simclr_ad.selection.judge`` measures when a new user trains with the shared
EfficientNet-Lite0 weights and the defaults: the pipeline's subset of good training images
(``SELECTION_IMAGES``) at the pretrained recipe's input shape, their leave-one-out scores for
the calibrated 1% threshold, and one synthetic defect in each of ``DEFECT_BASES`` of them
(``data.defects``' families in turn). Prints, per scoring, the synthetic recall at that
threshold, per family and pooled, and the synthetic AUROC. No test image is read.
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

from simclr_ad.config import TrainConfig, apply_pretrained_recipe, held_out_fraction
from simclr_ad.data.mvtec import load_category
from simclr_ad.data.shape import choose_shape
from simclr_ad.data.store import decode_images
from simclr_ad.detector import DetectorSettings
from simclr_ad.detector_bundle import model_spec
from simclr_ad.embeddings import Embedder
from simclr_ad.models.simclr import build_model
from simclr_ad.scoring.registry import SCORE_RULES
from simclr_ad.selection import SELECTION_IMAGES, Scoring, judge

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "efficientnet_lite0_imagenet.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "real")
    parser.add_argument("--category", default="kolektorsdd")
    parser.add_argument(
        "--seed", type=int, default=0, help="of the defects and the bank (the config's seed)"
    )
    parser.add_argument(
        "--patch-stages",
        default="",
        help="feature_info indices of the patch features, e.g. 1,2 (the stride-4 grid); "
        "default: the library's (stride 8 + 16)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    stages = [int(s) for s in args.patch_stages.split(",") if s]
    config, _ = apply_pretrained_recipe(
        TrainConfig(
            backbone="efficientnet_lite0",
            weights=str(WEIGHTS),
            seed=args.seed,
            patch_stages=tuple(stages),
        )
    )
    split = load_category(  # as the pipeline splits it: nothing held out with cross-fitting
        args.data, args.category, val_fraction=held_out_fraction(config), val_min=config.val_min
    )
    step = max(1, len(split.train) // SELECTION_IMAGES)
    subset = list(split.train)[::step][:SELECTION_IMAGES]
    shape = choose_shape(split.train, config.image_size, config.aspect)
    pixels = decode_images(subset, shape, max_bad_fraction=1.0).pixels
    model = build_model(model_spec(config), config.weights).eval()
    embedder = Embedder(model, config.patch_stages or None)
    settings = DetectorSettings.from_config(config)
    scorings = [Scoring(rule, positional) for positional in (False, True) for rule in SCORE_RULES]
    figures = judge(embedder, pixels, settings, scorings, torch.device("cpu"))
    for scoring, row in figures.items():
        row = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        tags = {"category": args.category, "seed": args.seed, "patch_stages": stages}
        print(json.dumps(tags | scoring._asdict() | row))
    seconds = round(time.perf_counter() - started)
    print(json.dumps({"category": args.category, "shape": list(shape), "seconds": seconds}))


if __name__ == "__main__":
    main()
