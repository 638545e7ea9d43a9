"""``simclr-ad config``: the configuration ``train`` would run with, as YAML ``--config`` reads
back; ``--config`` by the name of a shipped file."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simclr_ad.cli import main
from simclr_ad.config import (
    PRETRAINED_RECIPE,
    TrainConfig,
    apply_pretrained_recipe,
    build_config,
    load_yaml,
    shipped_configs,
)
from tests.conftest import TINY_TRAIN


def _printed(capsys, *argv: str) -> tuple[list[str], dict]:
    """The comment lines and the mapping ``simclr-ad config ARGV`` printed."""
    assert main(["config", *argv]) == 0
    out = capsys.readouterr().out
    comments = [line for line in out.splitlines() if line.startswith("#")]
    return comments, yaml.safe_load(out)


def test_defaults_are_printed_with_the_pretrained_recipe_train_applies(capsys) -> None:
    comments, printed = _printed(capsys)
    expected, recipe = apply_pretrained_recipe(TrainConfig())  # imagenet weights, auto on
    assert recipe == PRETRAINED_RECIPE
    assert printed == expected.to_dict()
    as_yaml = {k: list(v) if isinstance(v, tuple) else v for k, v in PRETRAINED_RECIPE.items()}
    assert {k: printed[k] for k in recipe} == as_yaml  # YAML has lists, not tuples
    assert any("epochs 0, image_size 512" in line for line in comments)


def test_without_pretrained_weights_the_defaults_stand(capsys) -> None:
    comments, printed = _printed(capsys, "--weights", "none")
    assert printed == TrainConfig(weights="none").to_dict()
    assert not any("pretrained" in line for line in comments)


def test_flags_override_a_shipped_file_given_by_name(capsys) -> None:
    comments, printed = _printed(capsys, "-q", "--config", "pretrained-512", "--epochs", "3")
    shipped = load_yaml(shipped_configs()["pretrained-512"])
    assert printed["backbone"] == shipped["backbone"] == "efficientnet_lite0"
    assert printed["epochs"] == 3 and printed["image_size"] == 512
    assert comments[0].endswith("defaults < --config pretrained-512 < flags")


def test_the_printed_config_reads_back_as_the_same_run(capsys, tmp_path: Path) -> None:
    """Saved and given back as ``--config``, it is the same configuration."""
    assert main(["config", "--config", "writeup", "--categories", "screw", "--lr", "1e-4"]) == 0
    saved = tmp_path / "mine.yaml"
    saved.write_text(capsys.readouterr().out)
    again, _ = apply_pretrained_recipe(build_config(load_yaml(saved)))
    assert again.categories == ("screw",) and again.lr == 1e-4 and again.pooled
    assert main(["config", "--config", str(saved)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == again.to_dict()


@pytest.mark.slow
def test_it_prints_exactly_the_config_train_writes(capsys, tiny_data: Path, tmp_path: Path) -> None:
    flags = ["--data", str(tiny_data), "--categories", "fabric", *TINY_TRAIN, "--epochs", "0"]
    run = tmp_path / "run"
    _, printed = _printed(capsys, *flags, "--out", str(run))
    assert main(["-q", "train", *flags, "--out", str(run)]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text()) == printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "pretrained-521"], "default, mvtec5, pretrained-512, writeup"),
        (["--config", "configs/pretrained-512.yaml"], "is --config pretrained-512"),
        (["--lr", "-1"], "lr=-1.0"),
        (["--epochs", "2", "--batch-size", "1"], "batch_size=1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    capsys, tmp_path: Path, monkeypatch, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert main(["config", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`simclr-ad ... | head`: the pipe closes before the output is written."""
    command = [sys.executable, "-m", "simclr_ad", "config"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the child has imported anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
