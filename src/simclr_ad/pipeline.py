"""Orchestration: the named steps of a training run (``train``), composed from the modules below."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from simclr_ad.calibration import highest_good
from simclr_ad.checkpoint import load_checkpoint
from simclr_ad.config import (
    TrainConfig,
    apply_pretrained_recipe,
    build_config,
    dump_yaml,
    held_out_fraction,
)
from simclr_ad.data.augment import create_augment
from simclr_ad.data.images import display_path
from simclr_ad.data.mvtec import (
    CategorySplit,
    Sample,
    file_list_hash,
    load_category,
    resolve_categories,
)
from simclr_ad.data.shape import choose_shape
from simclr_ad.data.store import DecodedImages, decode_images
from simclr_ad.detector import MIN_CROSSFIT_IMAGES, Detector, DetectorSettings, fit_detector
from simclr_ad.detector_bundle import model_metadata, model_spec, save_detector
from simclr_ad.devices import resolve_device
from simclr_ad.distributed import DistInfo, init_distributed, shutdown_distributed
from simclr_ad.embeddings import Embedder
from simclr_ad.errors import UserError
from simclr_ad.models.backbone import freeze_stages
from simclr_ad.models.simclr import SimCLRModel, build_model
from simclr_ad.objectives import build_objective, frozen_stage_count
from simclr_ad.preprocessing import Normalization
from simclr_ad.progress import progress_bar
from simclr_ad.run_folder import claim_run_folder
from simclr_ad.selection import SELECTION_IMAGES, choose, usable_candidates
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
    history: tuple[dict[str, float], ...]
    seconds: float


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


def load_splits(config: TrainConfig) -> list[CategorySplit]:
    """Every requested category's samples, with the validation good images held out."""
    root = Path(config.data)
    names = resolve_categories(root, config.categories)
    fraction = held_out_fraction(config)
    return [
        load_category(root, name, val_fraction=fraction, val_min=config.val_min) for name in names
    ]


def check_calibration_images(config: TrainConfig, splits: list[CategorySplit]) -> None:
    """Refuse, before any training, a category (or the pooled group) with too few good images
    to set its threshold: cross-fitting needs MIN_CROSSFIT_IMAGES, holding out needs 1 held-out
    image."""
    root = Path(config.data)
    groups = [splits] if config.pooled else [[split] for split in splits]
    for members in groups:
        where = display_path(root / members[0].category / "train" / "good")
        n_good = sum(len(s.train) + len(s.val) for s in members)
        if config.calibration == "crossfit" and n_good < MIN_CROSSFIT_IMAGES:
            raise UserError(
                f"{where}: only {n_good} good image(s); cross-fitted calibration needs at least "
                f"{MIN_CROSSFIT_IMAGES}"
            )
        if config.calibration == "holdout" and not any(s.val for s in members):
            raise UserError(
                f"{where}: no good image held out for --calibration holdout ({n_good} good "
                f"images, val_fraction {config.val_fraction}); raise --val-fraction, add "
                "images, or use --calibration crossfit"
            )


def input_shapes(
    config: TrainConfig,
    splits: list[CategorySplit],
    choices: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[int, int]]:
    """(height, width) of each category's images (``data.shape``) at its chosen image size;
    square for a pooled detector, whose categories share one memory bank."""
    aspect = "square" if config.pooled else config.aspect
    sizes = {s.category: (choices or {}).get(s.category, {}).get("image_size") for s in splits}
    return {
        s.category: choose_shape(s.train, sizes[s.category] or config.image_size, aspect)
        for s in splits
    }


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}


def auto_keys(config: TrainConfig, recipe: dict[str, Any]) -> list[str]:
    """The keys ``auto`` may change per category: none where it does not run (SimCLR epochs, a
    pooled detector, or a single candidate left by the keys the user set)."""
    usable = usable_candidates(set(recipe))
    if config.epochs != 0 or config.pooled or len(usable) < 2:
        return []
    return sorted({key for candidate in usable for key in candidate.keys})


def select_candidates(
    model: SimCLRModel,
    config: TrainConfig,
    splits: list[CategorySplit],
    settings: DetectorSettings,
    recipe: dict[str, Any],
    device: torch.device,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``auto`` (``selection``): per category the candidate with the best synthetic recall, when
    the pretrained recipe chose the settings (no training, not pooled). Returns the choices
    (category -> changed keys) and what was measured, for the bundle; none where the user's
    settings leave a single candidate."""
    if not auto_keys(config, recipe):
        return {}, {}
    embedder = Embedder(model, config.patch_stages or None)
    choices: dict[str, dict[str, Any]] = {}
    measured: dict[str, Any] = {}
    for split in progress_bar(splits, desc="auto: choosing settings", unit="category"):
        step = max(1, len(split.train) // SELECTION_IMAGES)
        subset = list(split.train)[::step][:SELECTION_IMAGES]

        def decode(size: int, split: CategorySplit = split, subset: list[Sample] = subset) -> Any:
            shape = choose_shape(split.train, size, config.aspect)
            return decode_images(subset, shape, max_bad_fraction=1.0).pixels

        best, rows = choose(embedder, decode, settings, set(recipe), device)
        choices[split.category] = dict(best.changes)
        measured[split.category] = {"chosen": best.name, "candidates": rows}
        log.info("auto: %s: %s", split.category, best.name)
    return choices, measured


def decode_train_val(
    splits: list[CategorySplit],
    shapes: dict[str, tuple[int, int]],
    *,
    cache_dir: Path | None = None,
) -> tuple[dict[str, DecodedImages], dict[str, DecodedImages]]:
    """Decoded training and validation good images of every category (val only where it has some).

    Both parts are decoded in one call, so the share of unreadable files that refuses a run is
    measured over the whole of a category's ``train/good``, not over its small validation part.
    """
    train: dict[str, DecodedImages] = {}
    val: dict[str, DecodedImages] = {}
    for split in splits:
        both = decode_images(
            [*split.train, *split.val], shapes[split.category], cache_dir=cache_dir
        )
        train[split.category] = both.subset(split.train)
        if split.val:
            val[split.category] = both.subset(split.val)
    return train, val


def calibration_files(
    detector: Detector, train: dict[str, DecodedImages], root: Path
) -> dict[str, list[str]]:
    """Per category, the training images whose cross-fitted scores set the thresholds (paths
    relative to the data root, in the order of the stored scores); pooled groups have none."""
    files: dict[str, list[str]] = {}
    for category, decoded in train.items():
        rows = detector.scorer_set(category).good_rows
        if rows is None or detector.settings.pooled:
            continue
        paths = [decoded.samples[int(r)].path for r in rows]
        files[category] = [display_path(p.relative_to(root)) for p in paths]
    return files


def _log_highest_good(detector: Detector, files: dict[str, list[str]]) -> None:
    """Per category, the primary scorer's threshold and the good training images that score
    highest among those that set it (``calibration.highest_good``): what an inspector checks
    when the threshold is too high, without a labelled test set."""
    primary = detector.settings.primary
    for category, paths in files.items():
        scorer_set = detector.scorer_set(category)
        scores = scorer_set.good_scores.get(primary)
        if scores is None:
            continue
        calibration = scorer_set.calibrations[primary]
        top = highest_good(scores.numpy(), paths, calibration.target_fpr, count=3)
        log.info(
            "%s: threshold %.4g (%s); the highest good training images: %s",
            category,
            calibration.threshold,
            calibration.promise,
            ", ".join(f"{g.path} {g.score:.4g}" for g in top),
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
        objective=checkpoint.get("objective"),
    )


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
    config, recipe = apply_pretrained_recipe(config)
    device = resolve_device(config.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        if resume is not None and checkpoint is None:
            checkpoint = load_checkpoint(resume)
        return _train(config, device, dist, resume, checkpoint, overwrite, started, recipe)
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
    recipe: dict[str, Any],
) -> TrainResult:
    out = Path(config.out)
    splits = load_splits(config)  # the data is checked before anything in --out is touched
    check_calibration_images(config, splits)
    same = resume is not None and resume.resolve().parent.parent == out.resolve()
    claim = (
        claim_run_folder(out, resuming_into_same=same, overwrite=overwrite)
        if dist.is_main
        else contextlib.nullcontext()
    )
    with claim:
        return _run(config, splits, device, dist, checkpoint, started, recipe)


def _run(
    config: TrainConfig,
    splits: list[CategorySplit],
    device: torch.device,
    dist: DistInfo,
    checkpoint: dict[str, Any] | None,
    started: float,
    recipe: dict[str, Any],
) -> TrainResult:
    """Train, fit the detector and save it, in a run folder this process holds."""
    out = Path(config.out)
    if dist.is_main:
        (out / "config.yaml").write_text(dump_yaml(config))
    if recipe and dist.is_main:  # said once the data is known to be there
        chosen = auto_keys(config, recipe)
        by_auto = f"; auto may change {', '.join(chosen)} per category" if chosen else ""
        log.info(
            "pretrained weights: %s (keys not set%s; --no-auto keeps their defaults)",
            ", ".join(f"{k} {v}" for k, v in recipe.items()),
            by_auto,
        )
    torch.manual_seed(
        config.seed
    )  # the random init of the head (and of the encoder with weights=none)
    # a resumed run keeps its checkpoint's normalisation (ImageNet's before it was recorded)
    normalization = (
        Normalization.from_metadata(checkpoint.get("preprocessing"))
        if checkpoint
        else Normalization.for_backbone(config.backbone)
    )
    model = build_model(model_spec(config, normalization), "none" if checkpoint else config.weights)
    history = (
        _simclr_epochs(model, config, splits, device, dist, checkpoint, out)
        if config.epochs > 0
        else []
    )
    if dist.is_main:
        write_train_log(out / "train_log.csv", history)
        _fit_and_save(model.eval(), config, splits, history, device, started, recipe)
    return TrainResult(
        run_dir=out,
        model_dir=out / "model",
        categories=tuple(split.category for split in splits),
        n_train=sum(len(split.train) for split in splits),
        n_val=sum(len(split.val) for split in splits),
        history=tuple(history),
        seconds=time.perf_counter() - started,
    )


def _simclr_epochs(
    model: SimCLRModel,
    config: TrainConfig,
    splits: list[CategorySplit],
    device: torch.device,
    dist: DistInfo,
    checkpoint: dict[str, Any] | None,
    out: Path,
) -> list[dict[str, float]]:
    """Self-supervised training on the train split (decoded once at ``image_size + 32``; the
    views are whole images at ``image_size``, or ``train_crop``-pixel crops at that resolution)."""
    train_samples = [s for split in splits for s in split.train]
    val_samples = [s for split in splits for s in split.val]
    augment = create_augment(
        config.augment,
        config.image_size,
        crop=config.train_crop,
        normalization=model.normalization,
    )
    # val is decoded too so that unreadable files are counted over the whole category
    decoded = decode_images(
        [*train_samples, *val_samples], augment.input_size, cache_dir=out
    ).subset(train_samples)
    data_hash = file_list_hash(train_samples, Path(config.data))
    if checkpoint is not None and checkpoint.get("data_hash") not in (None, data_hash):
        log.warning("the training files differ from those of the checkpoint")
    settings = LoopSettings.from_config(config)
    frozen_norms = freeze_stages(model.encoder, frozen_stage_count(config, model))
    objective = build_objective(config, model, decoded.pixels, device, fresh=checkpoint is None)
    trainer = Trainer(model, augment, settings, device, dist, objective, frozen_norms)
    return trainer.fit(
        decoded.pixels,
        out / "checkpoints",
        resume=_resume_state(checkpoint, config) if checkpoint else None,
        on_checkpoint=lambda _epoch: {
            "config": config.to_dict(),
            "data_hash": data_hash,
            "preprocessing": model.normalization.to_dict(),
        },
    )


def _fit_and_save(
    model: SimCLRModel,
    config: TrainConfig,
    splits: list[CategorySplit],
    history: list[dict[str, float]],
    device: torch.device,
    started: float,
    recipe: dict[str, Any],
) -> None:
    """Fit the scorers on train good images, calibrate their thresholds, save ``RUN/model``."""
    out = Path(config.out)
    settings = DetectorSettings.from_config(config)
    choices, selection = select_candidates(model, config, splits, settings, recipe, device)
    shapes = input_shapes(config, splits, choices)
    train, val = decode_train_val(splits, shapes, cache_dir=out)
    detector = fit_detector(
        model,
        train={c: d.pixels for c, d in train.items()},
        val={c: d.pixels for c, d in val.items()},
        settings=settings,
        device=device,
        choices={
            c: {k: v for k, v in ch.items() if k != "image_size"} for c, ch in choices.items()
        },
    )
    files = calibration_files(detector, train, Path(config.data))
    _log_highest_good(detector, files)
    train_samples = [s for split in splits for s in split.train]
    extra = {
        "epochs_trained": len(history),
        "seconds": round(time.perf_counter() - started, 2),
        "n_train": sum(len(d.samples) for d in train.values()),
        "n_val": sum(len(d.samples) for d in val.values()),
        "n_skipped": sum(len(d.skipped) for d in [*train.values(), *val.values()]),
        "calibration_files": files,
        "pretrained_recipe": recipe,
        "auto_selection": selection,
    }
    categories = [split.category for split in splits]
    metadata = model_metadata(
        config, categories, train_samples, extra, shapes, normalization=model.normalization
    )
    save_detector(out / "model", model.cpu(), detector, metadata)
