"""How heavy is the upper tail of good parts' scores, and where would a 1% threshold sit?

Usage:
    .venv/bin/python benchmarks/calibration_tail.py [--size 320] [--folds 5] [--out FILE.json]
    .venv/bin/python benchmarks/calibration_tail.py --config pretrained-512

On MVTec screw with a no-training detector (by default tf_efficientnet_lite0 at ``--size``;
``--config`` reads the settings from a config file instead; ImageNet weights from ``../shared``
either way), the project's own ``fit_detector`` is run on the fitting images, and then once
per fold with that fold held out: every fitting image gets an out-of-fold score from a detector
that never saw it. The held-out validation images (the pipeline's calibration set, 32 on screw)
and the out-of-fold scores are then two samples of the same good distribution, of 32 and 288
images. The script prints their upper tails, where the hottest pixel of the highest out-of-fold
images lies (on the image border or inside), and what the 1% threshold and the recall on the
selection defect types (``quality.SELECTION_TYPES``; settings are chosen on these) would be when
calibrated on the validation images alone (the pipeline's rule) or on all 320 scores (conformal),
and how many out-of-fold good images the pipeline's threshold flags: an estimate, from 288 parts
that neither fitting nor calibration saw, of the false-alarm rate it was calibrated for.
Test figures are printed once at the end, for the record.
"""

from __future__ import annotations

# isort: split
import simclr_ad  # noqa: F401  # sets OMP_WAIT_POLICY before torch starts its threads

# isort: split
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quality import EFFICIENTNET, SELECTION_TYPES, SHARED, TF_EFF
from simclr_ad.calibration import calibrate_threshold
from simclr_ad.config import build_config, load_yaml, resolve_config_file
from simclr_ad.data.store import decode_images
from simclr_ad.detector import Detection, DetectorSettings, fit_detector
from simclr_ad.detector_bundle import model_spec
from simclr_ad.metrics import image_metrics
from simclr_ad.models.simclr import SimCLRModel, build_model
from simclr_ad.pipeline import decode_train_val, load_splits

CATEGORY = "screw"
BORDER_FRACTION = 0.05  # a peak within 5% of the side from an edge is "on the border"


def out_of_fold(
    model: SimCLRModel,
    pixels: torch.Tensor,
    settings: DetectorSettings,
    folds: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and peak positions (N×2, row/col in pixels) of every image, each from a detector
    fitted (and calibrated) without its fold."""
    n = pixels.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    scores, peaks = np.zeros(n), np.zeros((n, 2), dtype=int)
    for fold in range(folds):
        held = order[fold::folds]
        keep = torch.ones(n, dtype=torch.bool)
        keep[held] = False
        detector = fit_detector(
            model, {CATEGORY: pixels[keep]}, {CATEGORY: pixels[held]}, settings, device=device
        )
        detection = detector.detect(pixels[held], CATEGORY, device=device, maps=True)
        scores[held.numpy()] = detection.scores["patch"].numpy()
        peaks[held.numpy()] = _peaks(detection)
        print(f"fold {fold + 1}/{folds} done", flush=True)
    return scores, peaks


def _peaks(detection: Detection) -> np.ndarray:
    assert detection.maps is not None
    maps = detection.maps
    flat = maps.flatten(start_dim=1).argmax(dim=1)
    side = maps.shape[-1]
    return torch.stack([flat // side, flat % side], dim=1).numpy()


def tail(scores: np.ndarray, n: int = 5) -> dict[str, Any]:
    return {
        "n": int(scores.size),
        "mean": round(float(scores.mean()), 3),
        "sd": round(float(scores.std(ddof=1)), 3),
        "top": [round(float(v), 2) for v in np.sort(scores)[::-1][:n]],
    }


def calibration_row(
    name: str, reference: np.ndarray, selection: np.ndarray, test: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    cal = calibrate_threshold(reference, target_fpr=0.01)
    test_metrics = image_metrics(test, labels, cal.threshold)
    good = test[labels == 0]
    return {
        "calibrated_on": name,
        "method": cal.method,
        "n": cal.n,
        "threshold": round(cal.threshold, 3),
        "selection_recall": round(float((selection >= cal.threshold).mean()), 3),
        "test_f1": round(test_metrics.f1, 3),
        "test_recall": round(test_metrics.recall, 3),
        "test_good_flagged": f"{int((good >= cal.threshold).sum())}/{good.size}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "mvtec_ad")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument(
        "--config", help="detector settings from this config file, or a shipped config's name"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if not (args.data / CATEGORY).is_dir():
        print(f"error: no MVTec screw data under {args.data}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    device = torch.device("cpu")
    values: dict[str, Any] = {"image_size": args.size, **TF_EFF}
    if args.config:
        values |= load_yaml(resolve_config_file(args.config))
    values |= {"categories": [CATEGORY], "epochs": 0, "weights": str(EFFICIENTNET)}
    config = build_config(values, data=str(args.data), out="/nonexistent", device="cpu")
    settings = DetectorSettings.from_config(config)
    model = build_model(model_spec(config), config.weights).eval()
    (split,) = load_splits(config)
    train, val = decode_train_val([split], config.image_size)
    test = decode_images(split.test, config.image_size)
    fitting, held_out = train[CATEGORY].pixels, val[CATEGORY].pixels

    detector = fit_detector(
        model, {CATEGORY: fitting}, {CATEGORY: held_out}, settings, device=device
    )
    val_scores = detector.detect(held_out, CATEGORY, device=device, maps=False).scores["patch"]
    test_scores = detector.detect(test.pixels, CATEGORY, device=device, maps=False).scores["patch"]
    oof, peaks = out_of_fold(model, fitting, settings, args.folds, device)

    labels = np.array([s.label for s in test.samples])
    types = np.array([s.defect_type for s in test.samples])
    selection = test_scores.numpy()[np.isin(types, SELECTION_TYPES)]
    val_np, test_np = val_scores.numpy(), test_scores.numpy()
    margin = round(BORDER_FRACTION * config.image_size)
    side = config.image_size
    top = np.argsort(-oof)[:10]
    on_border = [
        bool(min(r, c) < margin or max(r, c) >= side - margin) for r, c in peaks[top].tolist()
    ]
    result = {
        "command": " ".join(["benchmarks/calibration_tail.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "backbone": config.backbone,
        "image_size": config.image_size,
        "score_rule": config.score_rule,
        "held_out_good": tail(val_np),
        "out_of_fold_good": tail(oof, 10),
        "test_good": tail(test_np[labels == 0]),
        "out_of_fold_above_held_out_max": int((oof > val_np.max()).sum()),
        "out_of_fold_flagged_by_pipeline_threshold": int(
            (oof >= detector.threshold(CATEGORY, "patch")).sum()
        ),
        "top10_out_of_fold": [
            {"file": split.train[i].path.name, "score": round(float(oof[i]), 2), "border": b}
            for i, b in zip(top.tolist(), on_border, strict=True)
        ],
        "calibrations": [
            calibration_row("held-out good (pipeline)", val_np, selection, test_np, labels),
            calibration_row(
                "held-out + out-of-fold good", np.r_[val_np, oof], selection, test_np, labels
            ),
        ],
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
