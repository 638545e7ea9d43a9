"""Orchestration: the named steps of a training run, composed from the pure modules below."""

from __future__ import annotations

import dataclasses
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from simclr_ad import __version__
from simclr_ad.bundle import Bundle, prefixed, save_bundle
from simclr_ad.checkpoint import load_checkpoint
from simclr_ad.config import TrainConfig, build_config, dump_yaml
from simclr_ad.data.augment import IMAGENET_MEAN, IMAGENET_STD, create_augment
from simclr_ad.data.mvtec import (
    CategorySplit,
    Sample,
    file_list_hash,
    load_category,
    resolve_categories,
)
from simclr_ad.data.store import decode_images
from simclr_ad.distributed import DistInfo, init_distributed, shutdown_distributed
from simclr_ad.errors import UserError
from simclr_ad.models.simclr import ModelSpec, SimCLRModel, build_model
from simclr_ad.training import LoopSettings, ResumeState, Trainer, write_train_log

log = logging.getLogger(__name__)

# Keys that may differ from the checkpoint's config when resuming; anything else must match.
RESUMABLE_OVERRIDES = frozenset(
    {"epochs", "out", "data", "device", "checkpoint_every", "amp", "compile"}
)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_dir: Path
    categories: tuple[str, ...]
    n_train: int
    n_val: int
    n_skipped: int
    history: tuple[dict[str, float], ...]
    seconds: float


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable explicit device is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} requested but CUDA is not available here; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"device {name!r} requested but MPS is not available here; use --device cpu"
        )
    return device


def config_for_resume(checkpoint_config: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config plus the overrides resuming allows (epochs, out, data, device...)."""
    saved = build_config(checkpoint_config)
    changed = {
        k: v
        for k, v in overrides.items()
        if v is not None
        and k not in RESUMABLE_OVERRIDES
        and build_config(checkpoint_config, **{k: v}) != saved
    }
    if changed:
        raise UserError(
            f"cannot change {', '.join(sorted(changed))} when resuming; only "
            f"{', '.join(sorted(RESUMABLE_OVERRIDES))} may differ from the checkpoint"
        )
    return build_config(
        checkpoint_config, **{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
    )


def prepare_run_dir(out: Path, *, resuming_into_same: bool, overwrite: bool) -> None:
    """Refuse to overwrite a run with checkpoints unless resuming into it or told to overwrite."""
    checkpoints = out / "checkpoints"
    has_run = checkpoints.is_dir() and any(checkpoints.glob("*.ckpt"))
    if has_run and not (resuming_into_same or overwrite):
        raise UserError(
            f"run folder {out} already holds checkpoints; use --resume {checkpoints / 'last.ckpt'} "
            "to continue it, --overwrite to replace it, or another --out"
        )
    if has_run and overwrite:
        shutil.rmtree(checkpoints)
    out.mkdir(parents=True, exist_ok=True)


def load_splits(config: TrainConfig) -> list[CategorySplit]:
    """Every requested category's samples, with the validation good images held out."""
    root = Path(config.data)
    names = resolve_categories(root, config.categories)
    return [
        load_category(root, name, val_fraction=config.val_fraction, val_min=config.val_min)
        for name in names
    ]


def model_spec(config: TrainConfig) -> ModelSpec:
    return ModelSpec(
        backbone=config.backbone,
        head_hidden=config.head_hidden,
        head_out=config.head_out,
        head_dropout=config.head_dropout,
    )


def _resume_state(checkpoint: dict[str, Any], config: TrainConfig) -> ResumeState:
    done, total = int(checkpoint["epoch"]), int(checkpoint["total_epochs"])
    if config.epochs < done:
        raise UserError(
            f"the checkpoint has {done} epochs already; --epochs {config.epochs} is fewer"
        )
    extending = config.epochs != total
    return ResumeState(
        epoch=done,
        model=checkpoint["model"],
        optimizer=checkpoint["optimizer"],
        scheduler=None if extending else checkpoint["scheduler"],
        scaler=checkpoint.get("scaler"),
        rng=checkpoint.get("rng"),
        history=list(checkpoint.get("history", [])),
        schedule_start=done if extending else int(checkpoint.get("schedule_start", 0)),
    )


def model_metadata(
    config: TrainConfig, categories: list[str], train: list[Sample], extra: dict[str, Any]
) -> dict[str, Any]:
    """The JSON half of the bundle: what is needed to rebuild and use the model."""
    return {
        "kind": "simclr-ad",
        "model": dataclasses.asdict(model_spec(config)),
        "preprocessing": {
            "image_size": config.image_size,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "categories": categories,
        "training": {
            "config": config.to_dict(),
            "train_files_hash": file_list_hash(train, Path(config.data)),
            **extra,
        },
        "versions": {
            "simclr_ad": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def train(
    config: TrainConfig,
    *,
    resume: Path | None = None,
    checkpoint: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train SimCLR on the good images of the configured categories and save ``RUN/model``.

    Args:
        config: the resolved config.
        resume: checkpoint file to continue from.
        checkpoint: its contents, when the caller has read it already.
        overwrite: replace an existing run's checkpoints.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        if resume is not None and checkpoint is None:
            checkpoint = load_checkpoint(resume)
        return _train(config, device, dist, resume, checkpoint, overwrite, started)
    finally:
        shutdown_distributed()


def _train(
    config: TrainConfig,
    device: torch.device,
    dist: DistInfo,
    resume: Path | None,
    checkpoint: dict[str, Any] | None,
    overwrite: bool,
    started: float,
) -> TrainResult:
    out = Path(config.out)
    if dist.is_main:
        same = resume is not None and resume.resolve().parent.parent == out.resolve()
        prepare_run_dir(out, resuming_into_same=same, overwrite=overwrite)
        (out / "config.yaml").write_text(dump_yaml(config))
    splits = load_splits(config)
    train_samples = [s for split in splits for s in split.train]
    augment = create_augment(config.augment, config.image_size)
    decoded = decode_images(train_samples, augment.input_size, cache_dir=out)
    data_hash = file_list_hash(train_samples, Path(config.data))
    if checkpoint is not None and checkpoint.get("data_hash") not in (None, data_hash):
        log.warning("the training files differ from those of checkpoint %s", resume)
    settings = LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        temperature=config.temperature,
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
        amp=config.amp,
        compile=config.compile,
    )
    torch.manual_seed(
        config.seed
    )  # the random init of the head (and of the encoder with weights=none)
    model: SimCLRModel = build_model(model_spec(config), "none" if checkpoint else config.weights)
    history: list[dict[str, float]] = []
    if config.epochs > 0:
        trainer = Trainer(model, augment, settings, device, dist)
        history = trainer.fit(
            decoded.pixels,
            out / "checkpoints",
            resume=_resume_state(checkpoint, config) if checkpoint else None,
            on_checkpoint=lambda _epoch: {"config": config.to_dict(), "data_hash": data_hash},
        )
    model = model.cpu().eval()
    categories = [split.category for split in splits]
    n_val = sum(len(split.val) for split in splits)
    if dist.is_main:
        write_train_log(out / "train_log.csv", history)
        seconds = time.perf_counter() - started
        metadata = model_metadata(
            config,
            categories,
            train_samples,
            {
                "epochs_trained": len(history),
                "seconds": round(seconds, 2),
                "n_train": len(decoded.samples),
                "n_val": n_val,
                "n_skipped": len(decoded.skipped),
            },
        )
        save_bundle(out / "model", Bundle(prefixed(model.state_dict(), "model."), metadata))
    return TrainResult(
        run_dir=out,
        model_dir=out / "model",
        categories=tuple(categories),
        n_train=len(decoded.samples),
        n_val=n_val,
        n_skipped=len(decoded.skipped),
        history=tuple(history),
        seconds=time.perf_counter() - started,
    )
