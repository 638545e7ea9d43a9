"""The flags of ``train`` and ``config``: one per config key, with help written from
``TrainConfig``'s own defaults and ``choices`` from the sets ``config`` validates against,
so ``--help`` cannot drift from what a run does."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simclr_ad.config import (
    ASPECTS,
    AUGMENT_PRESETS,
    CALIBRATIONS,
    OBJECTIVES,
    PHOTOMETRIC_MODES,
    PRETRAINED_RECIPE,
    SCORE_RULES,
    SCORER_NAMES,
    TrainConfig,
    flat_keys,
    parse_set,
    shipped_configs,
)
from simclr_ad.errors import UserError

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
        f"{', '.join(n for n in shipped_configs() if '/' not in n)}, experiments/NAME (the "
        "measured research settings) (default: none; --set and flags override it)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config key, repeatable: --set bank_rotations=2 --set patch_stages=[1,2]; "
        "the research settings have no flag of their own (`simclr-ad config` lists every key); "
        "precedence: defaults < --config < --set < flags (default: none)",
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
        "--score-rule",
        choices=SCORE_RULES,
        help="image score from its anomaly map: max (PatchCore's) | topk_mean, the mean of its "
        f"hottest topk_fraction (default: {D.score_rule})",
    )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given as ``--set KEY=VALUE`` and then as flags, flags winning (argparse's
    None means "not given")."""
    flags = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return {**flat_keys(parse_set(getattr(args, "set", None))), **flags}


# Flags that measured as not helping (BENCHMARKS.md, "What was tried and did not become a
# default"): config keys still, set with --set or a file under configs/experiments/.
RESEARCH_KEYS = (
    "bank_rotations",
    "train_crop",
    "cutpaste_dense",
    "msc_angular",
    "patch_k",
    "topk_fraction",
    "map_sigma",
)
RESEARCH_FLAGS = {f"--{key.replace('_', '-')}": key for key in RESEARCH_KEYS}  # the old flags


def refuse_research_flags(argv: Sequence[str]) -> None:
    """A removed research flag is named with its ``--set`` form, in one line, before argparse
    would answer with its generic "unrecognized arguments".

    Raises:
        UserError: for the first research flag in ``argv`` (``--flag V`` or ``--flag=V``).
    """
    words = list(argv)
    if "--" in words:
        words = words[: words.index("--")]
    for i, word in enumerate(words):
        flag, sep, value = word.partition("=")
        if flag not in RESEARCH_FLAGS:
            continue
        key = RESEARCH_FLAGS[flag]
        if not sep:
            following = words[i + 1] if i + 1 < len(words) else ""
            value = following if following and not following.startswith("--") else "VALUE"
        experiment = f"experiments/{flag[2:]}"
        also = f" (measured: --config {experiment})" if experiment in shipped_configs() else ""
        raise UserError(f"{flag} is a research setting: --set {key}={value}{also}")
