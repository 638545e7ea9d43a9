"""The flags of ``train`` and ``config``: one per config key, with help written from
``TrainConfig``'s own defaults and ``choices`` from the sets ``config`` validates against,
so ``--help`` cannot drift from what a run does."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from simclr_ad.config import (
    ASPECTS,
    AUGMENT_PRESETS,
    BANK_ROTATIONS,
    CALIBRATIONS,
    OBJECTIVES,
    PHOTOMETRIC_MODES,
    PRETRAINED_RECIPE,
    SCORE_RULES,
    SCORER_NAMES,
    TrainConfig,
    shipped_configs,
)

D = TrainConfig()


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [c.strip() for c in text.split(",") if c.strip()]


def _recipe(key: str) -> str:
    """The default of a key the pretrained recipe changes, and what it becomes."""
    return (
        f"default: {getattr(D, key)}; {PRETRAINED_RECIPE[key]} with pretrained --weights "
        "unless --no-auto"
    )


def add_train_arguments(p: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    """Every config flag of ``train`` (``config`` takes the same, ``--out`` optional)."""
    p.add_argument(
        "--data",
        help="dataset root in the MVTec AD layout (no default: required unless --resume or "
        "--config gives it)",
    )
    p.add_argument(
        "--categories",
        type=comma_list,
        help="comma-separated category names (default: every category found under --data)",
    )
    p.add_argument(
        "--out",
        required=out_required,
        help="run folder: checkpoints, logs, config.yaml, model/"
        + (" (required)" if out_required else " (default: none)"),
    )
    p.add_argument(
        "--config",
        help="YAML file of config values, or the name of a shipped one: "
        f"{', '.join(shipped_configs())} (default: none; flags override it)",
    )
    p.add_argument("--epochs", type=int, help=f"SimCLR training epochs ({_recipe('epochs')})")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"images per step over all processes (default: {D.batch_size}, at most the "
        "number of training images)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help=f"side of square inputs, shorter side of elongated ones, pixels "
        f"({_recipe('image_size')})",
    )
    p.add_argument("--backbone", help=f"timm model name (default: {D.backbone})")
    p.add_argument(
        "--weights",
        help="imagenet (timm's, downloaded once) | none (random init) | PATH to a .safetensors "
        f"or state-dict file (default: {D.weights})",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENT_PRESETS,
        help="SimCLR views: seed (the write-up's list) | default (keeps what defects look "
        f"like) (default: {D.augment})",
    )
    p.add_argument(
        "--train-crop",
        type=int,
        help="train on crops of this many pixels at --image-size's resolution instead of on "
        f"whole images (0); the detector still sees whole images (default: {D.train_crop})",
    )
    p.add_argument("--lr", type=float, help=f"peak learning rate, AdamW (default: {D.lr:g})")
    p.add_argument(
        "--temperature", type=float, help=f"NT-Xent temperature (default: {D.temperature:g})"
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="simclr | msc (mean-shifted contrastive) | cutpaste (3-way synthetic defects) "
        f"(default: {D.objective})",
    )
    p.add_argument(
        "--frozen-stages",
        type=int,
        help="backbone stages kept frozen; -1: none for simclr, those before stride 16 for msc "
        f"and cutpaste (default: {D.frozen_stages})",
    )
    p.add_argument(
        "--msc-temperature",
        type=float,
        help=f"mean-shifted loss temperature (default: {D.msc_temperature:g})",
    )
    p.add_argument(
        "--msc-angular",
        type=float,
        help=f"weight of msc's angular-centre term (default: {D.msc_angular:g})",
    )
    p.add_argument(
        "--cutpaste-dense",
        type=float,
        help="cutpaste: weight of a per-location loss that learns where the defect was pasted, "
        f"on the detector's patch stages; 0: off (default: {D.cutpaste_dense:g})",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        help="share of train/good held out for the thresholds with --calibration holdout "
        f"(default: {D.val_fraction:g})",
    )
    p.add_argument(
        "--no-auto",
        dest="auto",
        action="store_const",
        const=False,
        help="pretrained weights: keep epochs, image size and score rule as they are (default: "
        "auto: those left unset become "
        f"{', '.join(f'{k} {v}' for k, v in PRETRAINED_RECIPE.items())}, then a per-category "
        "choice)",
    )
    p.add_argument(
        "--aspect",
        choices=ASPECTS,
        help="auto: elongated images keep their aspect ratio, the shorter side at --image-size; "
        f"square: resized to a square (default: {D.aspect})",
    )
    p.add_argument(
        "--device",
        help=f"auto (CUDA when available) | cpu | cuda | cuda:N | mps (default: {D.device})",
    )
    p.add_argument("--seed", type=int, help=f"seed of every random draw (default: {D.seed})")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help=f"epochs between checkpoints (default: {D.checkpoint_every})",
    )
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_const",
        const=False,
        help="train in float32 (default: bf16/fp16 autocast on CUDA and on CPUs with native bf16)",
    )
    p.add_argument(
        "--compile",
        action="store_const",
        const=True,
        help="torch.compile the model (default: off)",
    )
    _add_detector_arguments(p)
    p.add_argument(
        "--resume",
        type=Path,
        help="checkpoint to continue from, RUN/checkpoints/*.ckpt (default: none, a new run)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run's checkpoints and model; the old run comes back if the "
        "new one fails early (default: off)",
    )


def _add_detector_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("detector (fitted after training, calibrated on good images)")
    d.add_argument(
        "--scorers",
        type=comma_list,
        help=f"comma-separated, of {', '.join(SCORER_NAMES)}; all: every one, the write-up's "
        f"comparison (default: {','.join(D.scorers)})",
    )
    d.add_argument(
        "--primary",
        choices=SCORER_NAMES,
        help=f"the scorer whose verdict counts (default: {D.primary})",
    )
    d.add_argument(
        "--pooled",
        action="store_const",
        const=True,
        help="one scorer and threshold for all categories (default: off, one per category)",
    )
    d.add_argument(
        "--target-fpr",
        type=float,
        help=f"false-alarm rate the thresholds are set for (default: {D.target_fpr:g})",
    )
    d.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        help="crossfit: thresholds from cross-fitted scores of every good training image; "
        f"holdout: from a held-out --val-fraction (default: {D.calibration})",
    )
    d.add_argument(
        "--calibration-folds",
        type=int,
        help="folds of the global scorers' cross-fitted scores; patch leaves one image out "
        f"(default: {D.calibration_folds})",
    )
    d.add_argument(
        "--coreset-ratio",
        type=float,
        help=f"share of patches kept in the memory bank (default: {D.coreset_ratio:g})",
    )
    d.add_argument("--knn-k", type=int, help=f"neighbours of the knn scorers (default: {D.knn_k})")
    d.add_argument(
        "--photometric",
        choices=PHOTOMETRIC_MODES,
        help="brightness correction before the encoder: none | gain (to the training mean) | "
        f"standardize (mean and contrast) (default: {D.photometric})",
    )
    d.add_argument(
        "--patch-stages",
        help="backbone stages of the patch features, timm feature_info indices, e.g. 1,2 "
        "(default: the stride-8 and stride-16 stages)",
    )
    d.add_argument(
        "--patch-k", type=int, help=f"bank neighbours averaged per patch (default: {D.patch_k})"
    )
    d.add_argument(
        "--bank-rotations",
        type=int,
        choices=BANK_ROTATIONS,
        help="the patch bank also sees the training images turned by 180° (2) or by 90, 180 and "
        f"270° (4), for parts that lie at any angle (default: {D.bank_rotations})",
    )
    d.add_argument(
        "--map-sigma",
        type=float,
        help=f"Gaussian smoothing of the anomaly maps, pixels (default: {D.map_sigma:g})",
    )
    d.add_argument(
        "--score-rule",
        choices=SCORE_RULES,
        help=f"image score from its anomaly map: max | topk_mean ({_recipe('score_rule')})",
    )
    d.add_argument(
        "--topk-fraction",
        type=float,
        help=f"share of map pixels topk_mean averages (default: {D.topk_fraction:g})",
    )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given as flags (argparse's None means "not given")."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
