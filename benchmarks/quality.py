"""Quality benchmark: configurations side by side in one run, on synthetic data and MVTec screw.

Usage:
    .venv/bin/python benchmarks/quality.py --suite synthetic [--out DIR]
    .venv/bin/python benchmarks/quality.py --suite screw [--data ../shared/data/mvtec_ad]

Each configuration is trained (``--epochs 0`` = pretrained features only) and evaluated with the
project's own ``train`` and ``evaluate`` pipeline; thresholds are calibrated on held-out good
training images, never on the test set. Prints a Markdown table (for BENCHMARKS.md) and writes
``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from simclr_ad.config import build_config
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.demo import DEMO_DATA, DEMO_TRAIN
from simclr_ad.evaluation import evaluate
from simclr_ad.pipeline import resolve_device, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EFFICIENTNET = SHARED / "weights" / "efficientnet_lite0_imagenet.safetensors"
EFF = {"backbone": "efficientnet_lite0", "weights": str(EFFICIENTNET)}
# The shared weights are a port of Google's TensorFlow EfficientNet-Lite0, trained with TF "SAME"
# padding: timm's tf_ variant pads the same way, so its maps line up with the image.
TF_EFF = {"backbone": "tf_efficientnet_lite0", "weights": str(EFFICIENTNET)}
WRITE_UP = {
    "augment": "seed",
    "temperature": 0.07,
    "pooled": True,
    "primary": "mahalanobis_z",
    "photometric": "none",
    "mahalanobis_covariance": "pinv",
}


def synthetic_suite() -> list[tuple[str, dict[str, Any]]]:
    demo = dict(DEMO_TRAIN)
    pretrained = {**demo, **TF_EFF, "epochs": 0, "patch_stages": []}
    return [
        ("demo settings: resnet18 random init, 3 SimCLR epochs", {**demo, "weights": "none"}),
        ("resnet18 random init, no training", {**demo, "weights": "none", "epochs": 0}),
        ("tf_efficientnet_lite0 ImageNet, no training", pretrained),
        (
            "write-up config (seed aug, mahalanobis z, pooled), random init, 3 epochs",
            {**demo, "weights": "none", **WRITE_UP},
        ),
    ]


def screw_suite() -> list[tuple[str, dict[str, Any]]]:
    base = {"categories": ["screw"], "image_size": 256, "epochs": 0}
    return [
        ("efficientnet_lite0 ImageNet, 256 px, no training", {**base, **EFF}),
        ("efficientnet_lite0 ImageNet, 320 px, no training", {**base, **EFF, "image_size": 320}),
        (
            "efficientnet_lite0, 256 px, no brightness correction",
            {**base, **EFF, "photometric": "none"},
        ),
        (
            "tf_efficientnet_lite0 ImageNet, 320 px, no training",
            {**base, **TF_EFF, "image_size": 320},
        ),
        ("resnet18 random init, 256 px, no training", {**base, "weights": "none"}),
        (
            "write-up config (seed aug, mahalanobis z, pooled), efficientnet_lite0, 2 epochs",
            {**base, **EFF, **WRITE_UP, "epochs": 2, "batch_size": 64},
        ),
    ]


def _row(name: str, metrics: dict[str, Any], scores_csv: Path, train_s: float) -> dict[str, Any]:
    primary = metrics["primary"]
    entry = metrics["scorers"][primary]
    images = [c["image"] for c in entry["categories"].values()]
    false_alarms = _false_alarm_rate(scores_csv)
    return {
        "config": name,
        "primary": primary,
        "image_auroc": entry["mean"]["image_auroc"],
        "auroc_ci95": images[0]["auroc_ci95"] if len(images) == 1 else None,
        "pixel_auroc": entry["mean"]["pixel_auroc"],
        "aupro": entry["mean"]["aupro"],
        "f1": entry["mean"]["f1"],
        "precision": sum(i["precision"] for i in images) / len(images),
        "recall": sum(i["recall"] for i in images) / len(images),
        "trivial_f1": sum(i["trivial_f1"] for i in images) / len(images),
        "test_good_false_alarm_rate": false_alarms,
        "train_minutes": round(train_s / 60, 2),
        "ms_per_image": metrics["timing"]["ms_per_image"],
        "per_category": {c: v["image"]["auroc"] for c, v in entry["categories"].items()},
        "all_scorers_auroc": {s: v["mean"]["image_auroc"] for s, v in metrics["scorers"].items()},
    }


def _false_alarm_rate(scores_csv: Path) -> float:
    import csv

    with open(scores_csv) as handle:
        good = [r for r in csv.DictReader(handle) if r["label"] == "0"]
    return sum(r["prediction"] == "1" for r in good) / max(len(good), 1)


def run_config(
    name: str, values: dict[str, Any], data: Path, work: Path, device: str
) -> dict[str, Any]:
    run = work / name.split(" (")[0].replace(" ", "_").replace(",", "")[:40]
    shutil.rmtree(run, ignore_errors=True)
    config = build_config(values, data=str(data), out=str(run / "run"), device=device)
    started = time.perf_counter()
    result = train(config, overwrite=True)
    train_s = time.perf_counter() - started
    evaluation = evaluate(
        result.model_dir, data, run / "eval", device=resolve_device(device), overwrite=True
    )
    row = _row(name, evaluation.metrics, run / "eval" / "scores.csv", train_s)
    logging.getLogger("quality").warning("%s: image AUROC %.3f", name, row["image_auroc"])
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    return str(v)


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [
        "config",
        "image_auroc",
        "auroc_ci95",
        "pixel_auroc",
        "aupro",
        "f1",
        "precision",
        "recall",
        "trivial_f1",
        "test_good_false_alarm_rate",
        "train_minutes",
        "ms_per_image",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=["synthetic", "screw"], required=True)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "mvtec_ad")
    parser.add_argument("--out", type=Path, default=Path("/tmp/simclr-ad-quality"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.suite == "synthetic":
        data = args.out / "synthetic-data"
        shutil.rmtree(data, ignore_errors=True)
        generate_dataset(data, **DEMO_DATA)
        configs = synthetic_suite()
    else:
        data = args.data
        if not (data / "screw").is_dir():
            print(f"error: no MVTec screw data under {data}", file=sys.stderr)
            return 2
        configs = screw_suite()
    if not EFFICIENTNET.is_file():
        print(f"error: {EFFICIENTNET} is missing (the offline ImageNet weights)", file=sys.stderr)
        return 2
    rows = [run_config(name, values, data, args.out, args.device) for name, values in configs]
    report = {
        "suite": args.suite,
        "command": " ".join(
            ["benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "rows": rows,
    }
    (args.out / f"results-{args.suite}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows))
    print(f"\nresults: {args.out / f'results-{args.suite}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
