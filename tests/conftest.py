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
