"""``evaluate`` end to end: scoring, the metrics record and the files agree with each other."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from simclr_ad.detector_bundle import load_detector
from simclr_ad.evaluation import evaluate
from simclr_ad.metrics import image_metrics


def test_metrics_json_is_the_record_of_the_scores(
    tiny_model: Path, tiny_data: Path, tmp_path: Path
) -> None:
    result = evaluate(tiny_model, tiny_data, tmp_path, device=torch.device("cpu"))
    text = (tmp_path / "metrics.json").read_text()
    assert text == result.record.to_json()
    assert json.loads(text) == result.metrics

    detector = load_detector(tiny_model).detector
    for scores in result.categories:
        for scorer, entry in result.record.scorers.items():
            threshold = detector.threshold(scores.category, scorer)
            values = scores.detection.scores[scorer].numpy()
            expected = image_metrics(values, scores.labels, threshold)
            assert entry.categories[scores.category].image == expected

    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert (
        len(rows) == result.record.timing.images == sum(len(s.samples) for s in result.categories)
    )
    primary = result.record.primary
    for row in rows:
        threshold, score = detector.threshold(row["category"], primary), float(row[primary])
        if abs(score - threshold) > 1e-5 * abs(threshold):  # the CSV keeps 6 digits
            assert row["prediction"] == str(int(score >= threshold))
    counts = {s.category: s.counts for s in result.categories}
    for category, entry in result.metrics["scorers"][primary]["categories"].items():
        assert entry["counts"]["test_defect"] == counts[category].test_defect
        assert entry["counts"]["test_good"] + entry["counts"]["test_defect"] == np.sum(
            [r["category"] == category for r in rows]
        )
