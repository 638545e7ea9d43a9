"""``simclr-ad calibrate``: new thresholds for a saved detector from new good images.

The lighting, the supplier or the false-alarm budget change after training; the memory banks
need not. The new good images are scored by the bundle's detector, which was never fitted on
them, so their scores are held-out good scores and the thresholds follow
``calibration.calibrate_threshold``'s rule for them (conformal quantile with enough images,
else the Student-t bound), at the bundle's target false-alarm rate or a new one.

The result is a new bundle beside the old one, written through the same save path (hashed,
atomic): the same weights and banks, the new calibrations, and the new scores stored as its
calibration scores (so ``predict --target-fpr`` works on it, and ``evaluate`` lists them in
``val_scores.csv``). The old bundle is never written to: ``--out`` may not be it, hold it or
lie inside it, and an existing ``--out`` is replaced only with ``--overwrite`` and only when it
is itself a bundle.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simclr_ad.bundle import METADATA_FILE
from simclr_ad.calibration import Calibration, calibrate_threshold
from simclr_ad.data.images import display_path
from simclr_ad.detector_bundle import LoadedDetector, load_detector, save_detector
from simclr_ad.errors import UserError
from simclr_ad.outputs import check_output_folder
from simclr_ad.predict import collect_images, decode_or_reason
from simclr_ad.predictor import bundle_folder, resolve_category
from simclr_ad.progress import progress_bar

log = logging.getLogger(__name__)

CHUNK = 64  # images decoded and scored at a time: bounded memory, a progress bar that moves


@dataclasses.dataclass(frozen=True)
class Recalibration:
    """What ``calibrate`` did.

    Attributes:
        out: the new bundle.
        categories: the categories whose thresholds changed (a pooled model: all of them).
        n: number of good images scored.
        before: per category, the primary scorer's calibration in the old bundle.
        after: per category, the primary scorer's new calibration.
        flagged_before: how many of the new good images the old threshold flags.
    """

    out: Path
    categories: list[str]
    n: int
    before: dict[str, Calibration]
    after: dict[str, Calibration]
    flagged_before: int


def check_out(model: Path, out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` that would write over the model (itself, a folder holding it or one
    inside it) or over anything but an earlier bundle, before any work."""
    check_output_folder(out, "--out")
    source, target = model.resolve(), out.resolve()
    if target == source or target in source.parents or source in target.parents:
        raise UserError(
            f"--out {display_path(out)} would write over the model {display_path(model)}; "
            "choose a new folder (the old bundle is kept as it is)"
        )
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(
            f"--out {display_path(out)} already exists; choose another or add --overwrite"
        )
    if not (out / METADATA_FILE).is_file():
        raise UserError(
            f"--out {display_path(out)} is not a model bundle; --overwrite replaces only a bundle"
        )


def read_good_images(folder: Path, shape: tuple[int, int]) -> tuple[list[Path], Tensor]:
    """The image files under ``folder`` (recursively) and their uint8 N×3×H×W pixels.

    Raises:
        UserError: ``folder`` is not a folder, holds no image file, or holds one that cannot be
            read (a calibration set is taken whole or not at all: a skipped image would change
            the rule's n without a word).
    """
    if not folder.is_dir():
        raise UserError(f"--data {display_path(folder)} is not a folder of good images")
    items = collect_images([folder])
    paths = [item.path for item in items]
    with ThreadPoolExecutor(max_workers=4) as pool:
        decoded = list(pool.map(lambda item: decode_or_reason(item, shape), items))
    failed = [(p, d) for p, d in zip(paths, decoded, strict=True) if isinstance(d, str)]
    if failed:
        path, reason = failed[0]
        raise UserError(
            f"{len(failed)} of {len(paths)} images under {display_path(folder)} cannot be read, "
            f"e.g. {display_path(path)}: {reason}; fix or remove them"
        )
    arrays = [d for d in decoded if isinstance(d, np.ndarray)]
    return paths, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def check_not_fitted(loaded: LoadedDetector, category: str, paths: list[Path]) -> None:
    """Refuse the training images of a cross-fitted model (every one of them is in its memory
    bank): scored in sample they score low, and their threshold would flag good parts."""
    if loaded.detector.settings.calibration != "crossfit":
        return  # a held-out split lies under train/ too, and was never fitted
    root = loaded.metadata.get("training", {}).get("config", {}).get("data")
    if not root:
        return
    fitted = (Path(root) / category / "train").resolve()
    inside = [p for p in paths if fitted in p.resolve().parents]
    if inside:
        raise UserError(
            f"{display_path(inside[0])} is one of the model's training images (under "
            f"{display_path(fitted)}): the detector was fitted on it; calibrate on good images "
            "it has not seen"
        )


def score_good_images(
    loaded: LoadedDetector, pixels: Tensor, category: str, device: torch.device
) -> dict[str, Tensor]:
    """Every scorer's scores (N,) of uint8 N×3×H×W images, ``CHUNK`` images at a time."""
    parts: dict[str, list[Tensor]] = {name: [] for name in loaded.detector.settings.scorers}
    n = pixels.shape[0]
    with progress_bar(desc=f"{category}: scoring good images", total=n, unit="img") as bar:
        for start in range(0, n, CHUNK):
            chunk = pixels[start : start + CHUNK]
            detection = loaded.detector.detect(chunk, category, device=device, maps=False)
            for name, scores in detection.scores.items():
                parts[name].append(scores.float().cpu())
            bar.update(chunk.shape[0])
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def recalibrate(
    model: Path,
    data: Path,
    out: Path,
    *,
    category: str | None = None,
    target_fpr: float | None = None,
    device: torch.device,
    overwrite: bool = False,
) -> Recalibration:
    """Write ``out``: the bundle ``model`` with thresholds from the good images under ``data``.

    Args:
        model: the bundle (``RUN/model``, or the run folder above it); only read.
        data: a folder of good images of ``category`` (searched recursively).
        out: the new bundle's folder.
        category: the images' category (default: the model's only one).
        target_fpr: the false-alarm rate of the new thresholds (default: each scorer's old one).
        device: where the encoder runs.
        overwrite: replace an earlier bundle at ``out``.
    """
    if target_fpr is not None and not 0 < target_fpr < 1:
        raise UserError(f"--target-fpr must be in (0, 1), got {target_fpr}")
    model = bundle_folder(model)
    check_out(model, out, overwrite=overwrite)
    loaded = load_detector(model)
    category = resolve_category(loaded.detector.categories, category)
    paths, pixels = read_good_images(data, loaded.detector.input_shape(category))
    check_not_fitted(loaded, category, paths)
    scores = score_good_images(loaded, pixels, category, device)
    scorer_set = loaded.detector.scorer_set(category)
    before = dict(scorer_set.calibrations)
    scorer_set.calibrations = {
        name: calibrate_threshold(s.numpy(), target_fpr or before[name].target_fpr)
        for name, s in scores.items()
    }
    scorer_set.good_scores = scores
    scorer_set.good_rows = None  # the scores are of these images, not of training rows
    group = loaded.detector.category_group[category]
    members = [c for c, g in loaded.detector.category_group.items() if g == group]
    metadata = _recalibrated_metadata(loaded, members, paths, data, scorer_set.calibrations)
    save_detector(out, loaded.model, loaded.detector, metadata)
    primary = loaded.detector.settings.primary
    flagged = int(before[primary].is_anomalous(scores[primary].numpy()).sum())
    return Recalibration(
        out=out,
        categories=members,
        n=len(paths),
        before={c: before[primary] for c in members},
        after={c: scorer_set.calibrations[primary] for c in members},
        flagged_before=flagged,
    )


def _recalibrated_metadata(
    loaded: LoadedDetector,
    members: list[str],
    paths: list[Path],
    data: Path,
    calibrations: dict[str, Calibration],
) -> dict[str, Any]:
    """The old metadata with the calibration images of ``members`` replaced and the
    recalibration recorded (the hashes are recomputed by ``save_bundle``)."""
    meta = {
        k: v
        for k, v in loaded.metadata.items()
        if k not in ("format_version", "tensors_sha256", "metadata_sha256")
    }
    training = dict(meta.get("training", {}))
    files = dict(training.get("calibration_files", {}))
    for c in members:
        files[c] = [display_path(p.resolve()) for p in paths]
    training["calibration_files"] = files
    meta["training"] = training
    primary = loaded.detector.settings.primary
    rates = {
        loaded.detector.scorer_set(c).calibrations[primary].target_fpr
        for c in loaded.detector.categories
        if c not in members
    } | {calibrations[primary].target_fpr}
    meta["decision"] = {
        **meta.get("decision", {}),
        "target_fpr": rates.pop() if len(rates) == 1 else None,
    }
    meta["recalibrations"] = [
        *meta.get("recalibrations", []),
        {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "categories": members,
            "images": display_path(data.resolve()),
            "n": len(paths),
            "target_fpr": calibrations[primary].target_fpr,
            "source": "held-out",
            "from_tensors_sha256": loaded.metadata.get("tensors_sha256"),
            "from_metadata_sha256": loaded.metadata.get("metadata_sha256"),
        },
    ]
    return meta
