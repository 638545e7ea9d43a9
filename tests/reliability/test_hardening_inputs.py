"""Issue 16, inputs: runs that cannot set a threshold, non-finite and odd config values, and
command-line values that used to end in a traceback.

Each test failed before its fix: too few good images crashed after the whole training, ``inf``
passed validation, ``lr: 1e-3`` in YAML was refused, and the listed flags raised tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simclr_ad.pipeline as pipeline
from simclr_ad.cli import main
from tests.conftest import TINY_TRAIN


def _good_images(root: Path, n: int, category: str = "part") -> Path:
    folder = root / category / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model is built: the refusal must come before any training."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a model was built before the data was refused")

    monkeypatch.setattr(pipeline, "build_model", refuse)


@pytest.mark.parametrize(
    ("n_good", "flags", "expected"),
    [
        (1, [], "only 1 good image(s); cross-fitted calibration needs at least 2"),
        (3, ["--calibration", "holdout"], "no good image held out for --calibration holdout"),
        (
            40,
            ["--calibration", "holdout", "--val-fraction", "0"],
            "no good image held out for --calibration holdout (40 good images, val_fraction 0.0)",
        ),
    ],
)
def test_too_few_good_images_are_refused_before_training(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    n_good: int,
    flags: list[str],
    expected: str,
) -> None:
    data = _good_images(tmp_path / "data", n_good)
    out = tmp_path / "run"
    argv = ["-q", "train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY_TRAIN]
    assert main([*argv, *flags]) == 2
    line = _one_error_line(capsys)
    assert expected in line and str(data / "part" / "train" / "good") in line
    assert not out.exists()  # nothing written into --out
