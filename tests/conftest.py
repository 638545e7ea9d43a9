"""Shared fixtures: a tiny synthetic dataset made once per test session."""

from pathlib import Path

import pytest
import torch

from simclr_ad.data.synthetic import generate_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two categories of 14 train/good images (13 trained on, 1 held out for validation), 64 px."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(
        root, categories=("fabric", "bolt"), image_size=64, n_train=14, n_test=2, seed=0
    )
    return root


TINY_TRAIN = ["--image-size", "32", "--batch-size", "8", "--weights", "none", "--device", "cpu"]


def _train_tiny(root: Path, out: Path, *extra: str) -> Path:
    from simclr_ad.cli import main

    argv = ["-q", "train", "--data", str(root), "--out", str(out), *TINY_TRAIN, *extra]
    assert main([*argv, "--epochs", "0", "--coreset-ratio", "0.5"]) == 0
    return out / "model"


@pytest.fixture(scope="session")
def tiny_model(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector bundle for fabric and bolt at 32 px (encoder as initialised, no SimCLR epochs)."""
    return _train_tiny(tiny_data, tmp_path_factory.mktemp("tiny_model") / "run")


@pytest.fixture(scope="session")
def tiny_fabric_model(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_model`` with the one category fabric."""
    out = tmp_path_factory.mktemp("tiny_fabric") / "run"
    return _train_tiny(tiny_data, out, "--categories", "fabric")
