"""The saved detector: model weights, scorer state and the metadata that rebuilds and feeds
them, written to and read from a bundle (``bundle.py``). No training code is needed to read one.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import timm
import torch

from simclr_ad import __version__
from simclr_ad.bundle import Bundle, load_bundle, prefixed, save_bundle, unprefixed
from simclr_ad.config import TrainConfig
from simclr_ad.data.mvtec import Sample, file_list_hash
from simclr_ad.detector import Detector, detector_from_state, detector_state
from simclr_ad.errors import UserError
from simclr_ad.models.simclr import ModelSpec, SimCLRModel, build_model
from simclr_ad.preprocessing import Normalization


def model_spec(config: TrainConfig, normalization: Normalization | None = None) -> ModelSpec:
    """The model of ``config``, its input normalised with ``normalization`` (None: the
    backbone's pretrained mean/std)."""
    norm = normalization or Normalization.for_backbone(config.backbone)
    architecture = config.section("model")
    del architecture["weights"]  # the initial weights: loaded into the model, not part of it
    return ModelSpec(**architecture, mean=norm.mean, std=norm.std)


def model_metadata(
    config: TrainConfig,
    categories: list[str],
    train: list[Sample],
    extra: dict[str, Any],
    shapes: dict[str, tuple[int, int]] | None = None,
    normalization: Normalization | None = None,
) -> dict[str, Any]:
    """The JSON half of the bundle: what is needed to rebuild and use the model."""
    spec = model_spec(config, normalization)
    return {
        "kind": "simclr-ad",
        "model": dataclasses.asdict(spec),
        "preprocessing": {
            "image_size": config.image_size,
            "input_shapes": {c: list(hw) for c, hw in (shapes or {}).items()},
            "decode": "8-bit RGB, EXIF orientation applied",
            "resize": "bicubic, antialiased, to the category's input_shapes (height, width)",
            **spec.normalization.to_dict(),
        },
        "decision": {
            "primary_scorer": config.primary,
            "target_fpr": config.target_fpr,
            "normalized_score": "score / threshold (1.0 = the threshold)",
            "is_anomalous": "score >= threshold",
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
            "timm": timm.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def save_detector(
    folder: Path, model: SimCLRModel, detector: Detector, metadata: dict[str, Any]
) -> None:
    """The complete detector as one bundle: model weights, scorer state, thresholds."""
    scorer_tensors, detector_meta = detector_state(detector)
    tensors = prefixed(model.state_dict(), "model.") | scorer_tensors
    save_bundle(folder, Bundle(tensors, {**metadata, "detector": detector_meta}))


@dataclasses.dataclass(frozen=True)
class LoadedDetector:
    """A bundle read back: the model, the detector around it, and the metadata."""

    model: SimCLRModel
    detector: Detector
    metadata: dict[str, Any]


def load_detector(folder: Path) -> LoadedDetector:
    """Rebuild model and detector from ``RUN/model`` (no pickle, no training code state).

    The model's input normalisation is the recorded mean/std; bundles written before it was
    recorded load with ImageNet's, which they were trained with.
    """
    bundle = load_bundle(folder)
    meta = bundle.metadata
    if "detector" not in meta or "model" not in meta:
        raise UserError(f"model bundle {folder} holds no detector (made by an older simclr-ad?)")
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()
    }
    try:
        spec = ModelSpec(**fields)
        spec.normalization  # noqa: B018  # three numbers each, or the bundle is refused here
    except (TypeError, ValueError) as exc:
        raise UserError(f"model bundle {folder}: malformed model metadata ({exc})") from None
    model = build_model(spec, "none")
    model.load_state_dict(unprefixed(bundle.tensors, "model."))
    model.eval()
    detector = detector_from_state(model, bundle.tensors, meta["detector"])
    return LoadedDetector(model, detector, meta)
