"""Issue 16, inputs: runs that cannot set a threshold, non-finite and odd config values, and
command-line values that used to end in a traceback.

Each test failed before its fix: too few good images crashed after the whole training, ``inf``
passed validation, ``lr: 1e-3`` in YAML was refused, and the listed flags raised tracebacks.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr_ad.pipeline as pipeline
from simclr_ad.checkpoint import load_checkpoint
from simclr_ad.cli import main
from simclr_ad.config import TrainConfig, build_config, load_yaml
from simclr_ad.data.augment import create_augment
from simclr_ad.distributed import DistInfo
from simclr_ad.errors import UserError
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.training import LoopSettings, Trainer
from tests.conftest import TINY_TRAIN

FLOAT_KEYS = [f.name for f in dataclasses.fields(TrainConfig) if isinstance(f.default, float)]


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
        (1, [], "only 1 good image(s); cross-fitted calibration needs at least 3"),
        (2, [], "only 2 good image(s); cross-fitted calibration needs at least 3"),
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


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "nan"])
def test_non_finite_float_values_are_refused(key: str, value: float | str) -> None:
    with pytest.raises(UserError, match=f"invalid config value {key}=.*: expected a finite number"):
        build_config({key: value})


def test_non_finite_values_in_a_list_and_from_flags_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserError, match=r"head_dropout.*a finite number"):
        build_config({"head_dropout": [0.1, math.nan]})
    assert {"lr", "weight_decay", "msc_angular", "map_sigma", "target_fpr"} <= set(FLOAT_KEYS)
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    for flag in ("--lr", "--temperature", "--target-fpr"):
        assert main([*argv, flag, "inf"]) == 2
        assert "expected a finite number" in _one_error_line(capsys)
    for key in ("map_sigma", "msc_angular"):  # research settings: --set only
        assert main([*argv, "--set", f"{key}=inf"]) == 2
        assert "expected a finite number" in _one_error_line(capsys)


def test_yaml_numbers_written_as_text_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5E-6\nepochs: '3'\nmap_sigma: ' 2.5 '\n")
    values = load_yaml(path)
    assert values["lr"] == "1e-3"  # PyYAML (YAML 1.1) reads an exponent without a dot as text
    config = build_config(values)
    assert (config.lr, config.weight_decay, config.epochs, config.map_sigma) == (
        1e-3,
        5e-6,
        3,
        2.5,
    )
    assert isinstance(config.lr, float) and isinstance(config.epochs, int)
    for key, text in (("lr", "fast"), ("epochs", "1e3"), ("epochs", "3.0")):
        with pytest.raises(UserError, match=f"invalid config value {key}="):
            build_config({key: text})


@pytest.mark.parametrize("seed", [-1, 2**63, 10**30])
def test_seed_outside_64_bits_is_refused(seed: int) -> None:
    with pytest.raises(UserError, match=r"invalid config value seed=.*an integer in"):
        build_config(seed=seed)
    assert build_config(seed=2**63 - 1).seed == 2**63 - 1


def test_diverging_run_stops_naming_the_epoch_and_keeps_the_last_checkpoint(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", head_hidden=(16,), head_out=8, head_dropout=(0.0,)))
    settings = LoopSettings(
        epochs=4,
        batch_size=4,
        lr=1e-3,
        weight_decay=0.0,
        temperature=0.5,
        seed=0,
        checkpoint_every=1,
        amp=False,
    )
    trainer = Trainer(model, create_augment("seed", 16), settings, torch.device("cpu"), DistInfo())
    real_step = trainer.train_step
    calls: list[int] = []

    def step_that_diverges(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        loss = real_step(*args, **kwargs)  # type: ignore[arg-type]
        return loss * math.nan if len(calls) > 4 else loss  # from epoch 3 (2 steps an epoch)

    trainer.train_step = step_that_diverges  # type: ignore[method-assign]
    folder = tmp_path / "checkpoints"
    pixels = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8)
    with pytest.raises(UserError) as caught:
        trainer.fit(pixels, folder, on_checkpoint=lambda _: {"config": TrainConfig().to_dict()})
    message = str(caught.value)
    assert "loss became non-finite in epoch 3" in message and "\n" not in message
    assert f"the last good checkpoint, {folder / 'last.ckpt'}, is kept" in message
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        "epoch_001.ckpt",
        "epoch_002.ckpt",
        "last.ckpt",
    ]
    last = load_checkpoint(folder / "last.ckpt")
    assert last["epoch"] == 2 and all(math.isfinite(row["loss"]) for row in last["history"])


def _cli_cases(tmp: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    """argv -> the text its one line must hold; ``tmp/FILE`` is a file."""
    file, binary, head = tmp / "FILE", tmp / "binary.yaml", tmp / "head.yaml"
    train = ["train", "--data", str(tmp / "data")]
    predict = ["predict", "--model", str(model), str(tmp / "in")]
    serve = ["serve", "--model", str(model)]
    return {
        "train --out FILE": ([*train, "--out", str(file)], f"--out {file} is a file, not a folder"),
        "train --out FILE/sub": ([*train, "--out", f"{file}/sub"], f"{file} is a file"),
        'train --out ""': ([*train, "--out", ""], "--out is empty"),
        "evaluate --out FILE": (
            ["evaluate", "--model", str(model), "--data", str(tmp), "--out", str(file)],
            "is a file, not a folder",
        ),
        "predict --out missing/p.csv": (
            [*predict, "--out", str(tmp / "missing" / "p.csv")],
            f"the folder {tmp / 'missing'} does not exist",
        ),
        "predict --out DIR --overwrite": (
            [*predict, "--out", str(tmp), "--overwrite"],
            "is a folder; give a file name",
        ),
        "predict --heatmaps FILE/x": ([*predict, "--heatmaps", f"{file}/x"], f"{file} is a file"),
        "predict --device garbage": ([*predict, "--device", "garbage"], "unknown device 'garbage'"),
        "export --out DIR --overwrite": (
            ["export", "--model", str(model), "--out", str(tmp), "--overwrite"],
            "is a folder; give a file name",
        ),
        "serve --port 99999": ([*serve, "--port", "99999"], "--port must be in [0, 65535]"),
        "serve --max-upload-mb inf": ([*serve, "--max-upload-mb", "inf"], "a finite number > 0"),
        "serve --device garbage": ([*serve, "--device", "garbage"], "unknown device"),
        "train --seed 2**64": (
            [*train, "--out", str(tmp / "r"), "--seed", str(2**64)],
            "invalid config value seed=",
        ),
        "train --config BINARY": (
            [*train, "--out", str(tmp / "r"), "--config", str(binary)],
            f"config file {binary} is not UTF-8 text",
        ),
        "head_hidden: [1000000000]": (
            [*train, "--out", str(tmp / "r"), "--config", str(head)],
            "invalid config value head_hidden=(1000000000,): expected a list of integers in",
        ),
    }


CLI_CASES = list(_cli_cases(Path("/x"), Path("/m")))


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_command_line_values_are_one_line(
    case: str,
    tiny_fabric_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "FILE").write_text("a file")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00lr: 1")
    (tmp_path / "head.yaml").write_text("head_hidden: [1000000000]\n")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "in" / "a.png")
    monkeypatch.setattr(pipeline, "build_model", lambda *a, **k: pytest.fail("trained"))
    argv, expected = _cli_cases(tmp_path, tiny_fabric_model)[case]
    assert main(["-q", *argv]) == 2
    assert expected in _one_error_line(capsys)
    assert (tmp_path / "FILE").read_text() == "a file"


def test_non_utf8_category_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: a lone surrogate in Python
    data = _good_images(tmp_path / "data", 3, category=name)
    _good_images(data, 3, category="plain")
    out = tmp_path / "run"
    argv = ["-q", "train", "--data", str(data), "--out", str(out), "--epochs", "0", *TINY_TRAIN]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert f"category folder {data}/caf\\xe9 has a name that is not valid UTF-8" in line
    assert not out.exists()
