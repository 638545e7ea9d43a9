"""The typed metrics record: hand-made scores → the exact ``metrics.json`` entries."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch

from simclr_ad.calibration import Calibration, calibrate_threshold
from simclr_ad.data.mvtec import Sample
from simclr_ad.detector import Detection, Detector
from simclr_ad.evaluation.record import (
    EvaluationMetrics,
    RunIdentity,
    ScorerMetrics,
    Timing,
    category_metrics,
)
from simclr_ad.evaluation.scores import CategoryScores, ImageCounts
from simclr_ad.metrics import bootstrap_auroc_ci

CALIBRATION = Calibration(
    threshold=4.5, method="conformal", n=3, target_fpr=0.01, mean=4.0, std=5.0, max_score=9.0
)
COUNTS = ImageCounts(train_good=10, val_good=3, test_good=4, test_defect=4, test_unreadable=0)


def _scores(category: str = "pill", *, with_val: bool = True) -> CategoryScores:
    """Four good parts scored 1-4, cracks 5-6 and stains 7-8; good training scores 1, 2, 9."""
    kinds = ["good"] * 4 + ["crack"] * 2 + ["stain"] * 2
    samples = tuple(
        Sample(Path(f"{category}/{i}.png"), category, kind, int(kind != "good"))
        for i, kind in enumerate(kinds)
    )
    scores = {"knn_h": torch.arange(1.0, 9.0)}
    return CategoryScores(
        category=category,
        samples=samples,
        masks=np.zeros((8, 4, 4), dtype=bool),
        detection=Detection(scores=scores, maps=None),
        counts=COUNTS,
        seconds=0.5,
        pixels=torch.zeros(8, 3, 4, 4, dtype=torch.uint8),
        train=(),
        val_scores={"knn_h": torch.tensor([1.0, 2.0, 9.0])} if with_val else None,
        val_samples=tuple(
            Sample(Path(f"{category}/train/{i}.png"), category, "good", 0) for i in range(3)
        )
        if with_val
        else (),
    )


def _detector() -> Detector:
    """The two things the record asks of a detector: its scorer set's calibrations."""
    scorer_set = SimpleNamespace(calibrations={"knn_h": CALIBRATION})
    return cast(Detector, SimpleNamespace(scorer_set=lambda category: scorer_set))


def test_a_category_entry_is_metrics_json_key_for_key() -> None:
    entry = category_metrics(_detector(), _scores(), "knn_h").to_dict()
    # defects 5-8 against good training scores 1, 2, 9: 8 of 12 pairs ranked right
    control_ci = bootstrap_auroc_ci(
        np.array([1.0, 2, 9, 5, 6, 7, 8]), np.array([0, 0, 0, 1, 1, 1, 1])
    )
    expected: dict[str, Any] = {
        "image": {
            "auroc": 1.0,
            "auroc_ci95": [1.0, 1.0],
            "ap": 1.0,
            "f1": 1.0,
            "precision": 1.0,
            "recall": 1.0,
            "accuracy": 1.0,
            "threshold": 4.5,
            "f1_max": 1.0,
            "trivial_f1": pytest.approx(2 / 3),
            "tpr_at_fpr": {"0.01": 1.0, "0.05": 1.0},
            "n_good": 4,
            "n_defect": 4,
            "auroc_vs_val_good": pytest.approx(8 / 12),
            "auroc_vs_val_good_ci95": list(control_ci),
            "calibration": {
                "threshold": 4.5,
                "method": "conformal",
                "n": 3,
                "target_fpr": 0.01,
                "mean": 4.0,
                "std": 5.0,
                "max_score": 9.0,
                "source": "held-out",
                "folds": 0,
                "promise": CALIBRATION.promise,
            },
            "highest_good": [  # each with the threshold of the scores below it
                {
                    "path": "pill/train/2.png",
                    "score": 9.0,
                    "threshold_without": calibrate_threshold([1.0, 2.0]).threshold,
                },
                {"path": "pill/train/1.png", "score": 2.0, "threshold_without": 1.5},
                {"path": "pill/train/0.png", "score": 1.0, "threshold_without": None},
            ],
        },
        "pixel": {"auroc": None, "aupro": None},
        "per_defect": {"crack": {"auroc": 1.0, "n": 2}, "stain": {"auroc": 1.0, "n": 2}},
        "counts": {
            "train_good": 10,
            "val_good": 3,
            "test_good": 4,
            "test_defect": 4,
            "test_unreadable": 0,
        },
    }
    assert entry == expected
    assert list(entry) == list(expected)  # the file's key order, which older readers diff
    assert list(entry["image"]) == list(expected["image"])
    json.dumps(entry)  # plain values only


def test_the_control_is_none_without_good_training_scores() -> None:
    image = category_metrics(_detector(), _scores(with_val=False), "knn_h").to_dict()["image"]
    assert image["auroc_vs_val_good"] is None
    assert image["auroc_vs_val_good_ci95"] is None
    assert image["highest_good"] == []


def test_a_mean_leaves_out_categories_without_a_value() -> None:
    entry = category_metrics(_detector(), _scores(), "knn_h")
    worse = category_metrics(_detector(), _scores("bolt", with_val=False), "knn_h")
    scorer = ScorerMetrics({"pill": entry, "bolt": worse})
    assert scorer.mean() == {"image_auroc": 1.0, "pixel_auroc": None, "aupro": None, "f1": 1.0}
    assert list(scorer.to_dict()["categories"]) == ["pill", "bolt"]


@pytest.mark.parametrize(
    ("images", "seconds", "rate", "ms"),
    [(20, 0.5, 40.0, 25.0), (20, 0.0, None, 0.0), (0, 0.0, None, None)],
)
def test_timing_rates(images: int, seconds: float, rate: float | None, ms: float | None) -> None:
    timing = Timing(images=images, seconds=seconds, device="cpu").to_dict()
    assert timing == {
        "images": images,
        "seconds": seconds,
        "images_per_second": rate,
        "ms_per_image": ms,
        "device": "cpu",
    }


def test_the_record_writes_metrics_json_in_its_order() -> None:
    run = RunIdentity(
        model_path="run/model",
        model_sha256="ab",
        train_files_hash="cd",
        test_files_hash="ef",
        epochs_trained=0,
        input_shapes={"pill": [32, 32]},
        pretrained_recipe=None,
        auto_selection=None,
        training_seconds=1.5,
        versions={"torch": "2"},
    )
    record = EvaluationMetrics(
        primary="knn_h",
        evaluated="2026-12-03T09:00:00+00:00",
        scorers={
            "knn_h": ScorerMetrics({"pill": category_metrics(_detector(), _scores(), "knn_h")})
        },
        config={"image_size": 32},
        detector={"primary": "knn_h"},
        timing=Timing(images=8, seconds=0.5, device="cpu"),
        run=run,
    )
    text = record.to_json()
    assert text.endswith("}\n") and text == json.dumps(record.to_dict(), indent=2) + "\n"
    loaded = json.loads(text)
    assert list(loaded) == [
        "primary",
        "evaluated",
        "scorers",
        "config",
        "detector",
        "timing",
        "run",
    ]
    assert list(loaded["run"]) == [
        "model_path",
        "model_sha256",
        "train_files_hash",
        "test_files_hash",
        "epochs_trained",
        "input_shapes",
        "pretrained_recipe",
        "auto_selection",
        "training_seconds",
        "versions",
    ]
    assert loaded["scorers"]["knn_h"]["mean"]["image_auroc"] == 1.0
