"""The demo: synthetic data -> a short training run -> detector -> evaluation, in CPU minutes."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from simclr_ad.config import build_config
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.devices import resolve_device
from simclr_ad.errors import UserError
from simclr_ad.evaluation import evaluate
from simclr_ad.models.backbone import create_backbone
from simclr_ad.pipeline import train

log = logging.getLogger(__name__)

MARKER = ".simclr-ad-demo"
DEMO_DATA: dict[str, Any] = {"image_size": 128, "n_train": 60, "n_test": 8, "seed": 0}
DEMO_TRAIN: dict[str, Any] = {  # a few SimCLR epochs from ImageNet or random-init weights
    "image_size": 128,
    "epochs": 3,
    "batch_size": 64,
    "checkpoint_every": 3,
    # Random-init features (offline): the stride-4 and -8 stages localise better than deeper ones.
    "patch_stages": [1, 2],
    "coreset_ratio": 0.05,
    "score_rule": "topk_mean",
}
# With a local weights file (``make demo`` passes ../shared's EfficientNet-Lite0 ImageNet weights
# where they are): their patch features as they are, the recipe measured best on real parts.
PRETRAINED_DEMO_TRAIN: dict[str, Any] = {
    "image_size": 128,
    "epochs": 0,
    "batch_size": 64,
    "coreset_ratio": 0.05,
}


@dataclasses.dataclass(frozen=True)
class DemoEncoder:
    """The demo's backbone, its weights and the training keys that suit them."""

    backbone: str
    weights: str
    settings: dict[str, Any]


def choose_encoder(backbone: str = "resnet18", weights: Path | None = None) -> DemoEncoder:
    """A local weights file when one is given (checked to fit ``backbone`` before any work);
    else ImageNet weights where the model hub has them, else random init (said on the terminal).
    """
    if weights is not None:
        create_backbone(backbone, str(weights))
        return DemoEncoder(backbone, str(weights), PRETRAINED_DEMO_TRAIN)
    return DemoEncoder(backbone, _hub_weights(backbone), DEMO_TRAIN)


def _claim_folder(out: Path) -> None:
    """Use ``out`` only if it is new, empty, or an earlier demo's folder (never a user's files)."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"{out} exists and was not made by the demo; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `simclr-ad demo`; safe to delete\n")


def _hub_weights(backbone: str) -> str:
    """ImageNet weights where they can be had, else random init (said so on the terminal)."""
    try:
        create_backbone(backbone, "imagenet")
    except UserError as exc:
        log.warning("%s\n-> the demo continues with random init (--weights none)", exc)
        return "none"
    return "imagenet"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    model_dir: Path
    eval_dir: Path
    metrics: dict[str, Any]
    report: Path


def run_demo(
    out: Path, *, device: str = "auto", backbone: str = "resnet18", weights: Path | None = None
) -> DemoResult:
    """Generate data (once), train, fit and calibrate the detector, evaluate on the test split.

    Args:
        out: the demo's folder (new, empty or an earlier demo's).
        device: ``auto``, ``cpu``, ``cuda``...
        backbone: the timm backbone.
        weights: a local file of pretrained weights for ``backbone`` (see ``choose_encoder``).
    """
    encoder = choose_encoder(backbone, weights)
    _claim_folder(out)
    data = out / "data"
    marker = data / MARKER
    if not marker.exists() or marker.read_text() != repr(DEMO_DATA):  # else reuse the data
        shutil.rmtree(data, ignore_errors=True)
        log.info("writing synthetic data to %s", data)
        generate_dataset(data, **DEMO_DATA)
        marker.write_text(repr(DEMO_DATA))
    config = build_config(
        encoder.settings,
        data=str(data),
        out=str(out / "run"),
        device=device,
        backbone=encoder.backbone,
        weights=encoder.weights,
    )
    result = train(config, overwrite=True)
    evaluation = evaluate(
        result.model_dir, data, out / "eval", device=resolve_device(device), overwrite=True
    )
    return DemoResult(result.model_dir, out / "eval", evaluation.metrics, evaluation.report)
