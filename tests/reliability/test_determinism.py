"""Same seed and data -> the same weights and the same scores on CPU (CUDA: see RELIABILITY.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from simclr_ad.bundle import load_bundle
from simclr_ad.cli import main
from simclr_ad.data.images import read_rgb
from simclr_ad.predictor import open_predictor, stack_images
from tests.conftest import TINY_TRAIN


def _train(data: Path, out: Path) -> Path:
    argv = ["-q", "train", "--data", str(data), "--out", str(out), *TINY_TRAIN]
    argv += ["--categories", "fabric", "--epochs", "1", "--seed", "3", "--coreset-ratio", "0.5"]
    assert main(argv) == 0
    return out / "model"


def test_same_seed_same_data_same_scores(tiny_data: Path, tmp_path: Path) -> None:
    first, second = _train(tiny_data, tmp_path / "a"), _train(tiny_data, tmp_path / "b")
    a, b = load_bundle(first), load_bundle(second)
    assert a.metadata["tensors_sha256"] == b.metadata["tensors_sha256"]
    paths = sorted((tiny_data / "fabric" / "test").rglob("*.png"))
    pixels = stack_images([read_rgb(p, 32) for p in paths])
    scores = [
        [p.score for p in open_predictor(m, torch.device("cpu")).predict(pixels, "fabric")]
        for m in (first, second)
    ]
    assert scores[0] == scores[1]
