"""A hand-made evaluation folder (``metrics.json``, ``scores.csv``, ``report_data/``) whose
outcome is chosen: a report test can show a detector that beats flagging everything beside one
that does not, at the size of a real category (128 px thumbnails, five defect types), without
training anything."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from simclr_ad.calibration import calibrate_threshold
from simclr_ad.data.synthetic import CATEGORIES
from simclr_ad.metrics import image_metrics
from simclr_ad.report.data import (
    DATA_DIR,
    collect_category,
    save_category,
    select_gallery,
    write_run_data,
)

SIZE = 128
CHANNELS = 64  # width of the fake embeddings h
NOISE = 6.0  # grey levels of noise on the renders


@dataclass(frozen=True)
class FakeCategory:
    """A category's test outcome: good and defective scores per defect type, and the good
    training scores the threshold is calibrated on."""

    good: np.ndarray
    defects: dict[str, np.ndarray]
    calibration_scores: np.ndarray
    target_fpr: float = 0.01


def beating(rng: np.random.Generator, n_good: int = 100, per_defect: int = 12) -> FakeCategory:
    """Good parts well below the threshold, defects mostly above: beats flagging everything."""
    return FakeCategory(
        good=rng.normal(1.0, 0.1, n_good),
        defects={d: rng.normal(2.0, 0.3, per_defect) for d in CATEGORIES["pill"].defect_types},
        calibration_scores=rng.normal(1.0, 0.1, 150),
    )


def flag_everything(rng: np.random.Generator) -> FakeCategory:
    """Good and defective parts alike and far above a threshold set on lower training scores:
    every part is flagged, so F1 equals flagging everything."""
    return FakeCategory(
        good=rng.normal(3.0, 0.2, 10),
        defects={"crack": rng.normal(3.0, 0.2, 6), "stain": rng.normal(3.0, 0.2, 6)},
        calibration_scores=rng.normal(1.0, 0.1, 20),
    )


def _render(defects: list[str], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N×3×SIZE×SIZE renders of the synthetic pill (``good``: no defect) and their masks."""
    spec = CATEGORIES["pill"]
    rendered = [
        spec.sample(rng, image_size=SIZE, defect=None if d == "good" else d) for d in defects
    ]
    images = np.stack([r.image for r in rendered]).astype(np.float64)
    images += rng.normal(0.0, NOISE, images.shape)  # a camera's grain: photos compress less
    pixels = torch.from_numpy(np.clip(images, 0, 255).astype(np.uint8)).permute(0, 3, 1, 2)
    return pixels.contiguous(), torch.from_numpy(np.stack([r.mask for r in rendered]))


def _smooth_maps(scores: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """N×SIZE×SIZE maps like a patch scorer's: a smooth bump whose peak is the image's score."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    centres = rng.random((len(scores), 2))
    bumps = np.exp(
        -((y - centres[:, :1, None]) ** 2 + (x - centres[:, 1:, None]) ** 2) / 0.02
    )  # N×SIZE×SIZE
    return torch.from_numpy((scores[:, None, None] * (0.5 + 0.5 * bumps)).astype(np.float32))


def write_evaluation(folder: Path, categories: dict[str, FakeCategory], *, seed: int = 0) -> Path:
    """Write the evaluation of ``categories`` (renders of the synthetic ``pill``) into
    ``folder``; return it."""
    rng = np.random.default_rng(seed)
    scorers: dict[str, dict[str, object]] = {}
    rows: list[list[str]] = []
    for name, outcome in categories.items():
        defects = ["good"] * len(outcome.good) + [d for d, s in outcome.defects.items() for _ in s]
        scores = np.concatenate([outcome.good, *outcome.defects.values()])
        labels = np.array([int(d != "good") for d in defects])
        calibration = calibrate_threshold(
            outcome.calibration_scores, outcome.target_fpr, folds=len(outcome.calibration_scores)
        )
        image = image_metrics(scores, labels, calibration.threshold, n_boot=200).to_dict()
        image["calibration"] = {**calibration.to_dict(), "promise": calibration.promise}
        scorers[name] = {"image": image, "pixel": {"auroc": None, "aupro": None}}
        paths = [f"data/{name}/test/{d}/{i:03d}.png" for i, d in enumerate(defects)]
        rows += [
            [p, name, d, str(y), f"{s:.6g}", str(int(s >= calibration.threshold))]
            for p, d, y, s in zip(paths, defects, labels, scores, strict=True)
        ]
        gallery = select_gallery(scores, labels, defects)
        index = torch.from_numpy(gallery.index)
        pixels = torch.zeros((len(defects), 3, SIZE, SIZE), dtype=torch.uint8)
        masks = torch.zeros((len(defects), SIZE, SIZE), dtype=torch.bool)
        pixels[index], masks[index] = _render([defects[i] for i in gallery.index], rng)
        train_pixels, _ = _render(["good"] * 8, rng)
        report = collect_category(
            paths=paths,
            pixels=pixels,
            masks=masks,
            maps=_smooth_maps(scores, rng),
            h_test=torch.from_numpy(rng.normal(size=(len(defects), CHANNELS)).astype(np.float32)),
            train_pixels=train_pixels,
            h_train=torch.from_numpy(rng.normal(size=(8, CHANNELS)).astype(np.float32)),
            gallery=gallery,
        )
        save_category(folder / DATA_DIR / f"{name}.npz", report)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "defect_type", "label", "patch", "prediction"])
        writer.writerows(rows)
    mean = {"image_auroc": None, "pixel_auroc": None, "aupro": None, "f1": None}
    metrics = {
        "primary": "patch",
        "evaluated": "2024-05-06T07:08:09+00:00",
        "scorers": {"patch": {"categories": scorers, "mean": mean}},
        "config": {},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_run_data(folder / DATA_DIR / "run.json", folder / "no_train_log.csv")
    return folder
