"""``benchmarks/speed.py --tiny``: the JSON a user reads has every key the issue asks for.

Plumbing only (tiny images, one repetition, in-process): no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SPEED = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


def _load_speed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("speed_benchmark", SPEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_writes_every_required_key(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    speed = _load_speed()
    assert speed.main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    results = json.loads(out.read_text())
    assert set(results["augment_images_per_s"]) == {"seed_pipeline", "ours", "ratio"}
    for size in ("128", "224"):
        assert {"seed_loop", "ours", "ratio", "ours_fp32", "autocast"} <= set(
            results["train_images_per_s"][size]
        )
    assert {"batch1", "batch32"} <= set(results["inference_ms_per_image"])
    for bank in ("1k", "10k", "100k"):
        assert set(results["bank_search_ms"][bank]) >= {"exact", "faiss"}
    assert set(results["peak_rss_mb"]) == {"augment", "train", "inference", "search"}
    figures = [
        results["augment_images_per_s"]["ratio"],
        results["train_images_per_s"]["128"]["ratio"],
        results["inference_ms_per_image"]["batch1"],
        results["bank_search_ms"]["100k"]["faiss"],
    ]
    assert all(value > 0 for value in figures)
