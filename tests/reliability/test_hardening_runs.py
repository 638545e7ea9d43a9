"""Issue 16, items 1-3: a failed command never costs the previous run or evaluation, and two
``train`` commands never write into one run folder at once.

Before the fixes ``train --overwrite`` deleted the old checkpoints and rewrote ``config.yaml``
before finding out that its data or weights were wrong, ``evaluate --overwrite`` deleted the old
figures and report data before it failed, and two concurrent runs both "succeeded".
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

import simclr_ad.evaluation.outputs as evaluation_outputs
from simclr_ad.cli import main
from simclr_ad.errors import UserError
from tests.conftest import TINY_TRAIN


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the lock file aside) by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def old_run(tiny_fabric_model: Path, tmp_path: Path) -> Path:
    """A copy of a finished run, with a checkpoint as a longer run would have."""
    run = tmp_path / "run"
    shutil.copytree(tiny_fabric_model.parent, run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"the old run's checkpoint")
    return run


def test_failed_train_overwrite_keeps_the_old_run(
    old_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(old_run)
    argv = ["-q", "train", "--out", str(old_run), "--overwrite", *TINY_TRAIN, "--epochs", "0"]
    assert main([*argv, "--data", str(tmp_path / "mistyped")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _snapshot(old_run) == before
    missing_weights = tmp_path / "missing.safetensors"
    argv = [*argv, "--data", str(tiny_data), "--categories", "fabric"]
    assert main([*argv, "--weights", str(missing_weights)]) == 2  # fails after the data check
    assert str(missing_weights) in capsys.readouterr().err
    assert _snapshot(old_run) == before  # set aside, then put back
    assert not list(old_run.glob(".previous-*"))
    assert main([*argv, "--seed", "3"]) == 0  # a run that succeeds replaces the old one
    after = _snapshot(old_run)
    assert "checkpoints/last.ckpt" not in after
    assert after["model/model.safetensors"] != before["model/model.safetensors"]
    assert not list(old_run.glob(".previous-*"))


def test_second_train_into_the_same_folder_is_refused(
    old_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(old_run)
    argv = ["-q", "train", "--out", str(old_run), "--data", str(tiny_data), "--overwrite"]
    with open(old_run / ".lock", "a") as held:  # as a running train holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main([*argv, *TINY_TRAIN, "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: run folder {old_run} is in use by another train (it holds .lock); wait for it "
        "to end or choose another --out"
    ]
    assert _snapshot(old_run) == before


def test_failed_evaluate_overwrite_keeps_the_old_evaluation(
    tiny_fabric_model: Path,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "eval"
    argv = ["-q", "evaluate", "--model", str(tiny_fabric_model), "--data", str(tiny_data)]
    argv += ["--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    before = _snapshot(out)
    assert any(name.startswith("report_data/") for name in before)
    assert any(name.startswith("figures/") for name in before)

    def failing_save(*_args: object, **_kwargs: object) -> None:
        raise UserError("cannot write the report data (as a corrupt mask would)")

    monkeypatch.setattr(evaluation_outputs, "save_category", failing_save)  # after metrics.json
    assert main([*argv, "--overwrite"]) == 2
    assert "cannot write the report data" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted({n.split("/")[0] for n in before})
    assert main(["-q", "report", "--eval", str(out)]) == 0  # still works
