"""Crash safety: kill -9 while a checkpoint is written, interrupted bundle and ONNX writes, full
disks. Each time the previous file survives intact and no half-written file is left behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from simclr_ad import bundle as bundle_module
from simclr_ad import checkpoint as checkpoint_module
from simclr_ad.bundle import Bundle, load_bundle, save_bundle
from simclr_ad.checkpoint import load_checkpoint, save_checkpoint
from simclr_ad.cli import main
from simclr_ad.errors import UserError
from tests.conftest import TINY_TRAIN
from tests.reliability.corpus import training_payload

# Runs `simclr-ad train` with torch.save patched: the 4th save (last.ckpt after epoch 2) writes
# half its bytes, signals the test through a marker file and hangs until it is killed.
SLOW_SAVE = textwrap.dedent(
    """
    import io, os, sys, time
    import torch
    from simclr_ad import checkpoint
    from simclr_ad.cli import main

    marker, calls, real_save = sys.argv[1], [], torch.save

    def slow_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) < 4:
            return real_save(obj, path, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(path, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        open(marker, "w").close()
        time.sleep(600)

    checkpoint.torch.save = slow_save
    sys.exit(main(sys.argv[2:]))
    """
)


def _no_temporaries(folder: Path) -> list[Path]:
    hidden = [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    return [p for p in hidden if p.name != ".lock"]  # train's lock file stays (flock)


def test_kill_9_while_writing_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "writing"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), *TINY_TRAIN]
    argv += ["--epochs", "3", "--checkpoint-every", "1", "--scorers", "patch"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(marker), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "training never reached the second checkpoint"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    checkpoints = run / "checkpoints"
    assert load_checkpoint(checkpoints / "last.ckpt")["epoch"] == 1  # the previous one, whole
    assert len(list(checkpoints.glob(".last.ckpt.*.tmp"))) == 1  # the half file, never renamed
    resume = ["-q", "train", "--resume", str(checkpoints / "last.ckpt"), "--out", str(run)]
    assert main(resume) == 0
    assert load_checkpoint(checkpoints / "last.ckpt")["epoch"] == 3
    assert load_bundle(run / "model").metadata["training"]["epochs_trained"] == 3
    assert _no_temporaries(run) == []  # the killed run's temporary file was cleared


def _bundle(value: float) -> Bundle:
    return Bundle({"w": torch.full((64, 64), value)}, {"kind": "test", "value": value})


def test_interrupted_bundle_write_keeps_the_old_bundle(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model"
    save_bundle(target, _bundle(1.0))
    real_save_file = bundle_module.save_file

    def interrupted(tensors: dict[str, torch.Tensor], path: str) -> None:
        real_save_file(tensors, path)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(target, _bundle(2.0))
    monkeypatch.undo()
    real_replace = os.replace
    calls: list[Any] = []

    def swap_fails(src: Any, dst: Any) -> None:  # the old bundle moved aside, the new one not in
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(bundle_module.os, "replace", swap_fails)
    with pytest.raises(UserError, match="cannot write model bundle"):
        save_bundle(target, _bundle(3.0))
    monkeypatch.undo()
    assert load_bundle(target).metadata["value"] == 1.0
    assert _no_temporaries(tmp_path) == []


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_then_enospc(path: Path) -> None:
    path.write_bytes(b"\0" * 1000)
    _enospc()


def test_full_disk_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, training_payload(1))
    monkeypatch.setattr(checkpoint_module.torch, "save", lambda obj, p: _half_then_enospc(p))
    with pytest.raises(UserError, match=f"no space left on the device while writing {path}"):
        save_checkpoint(path, training_payload(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_disk_bundle(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model"
    save_bundle(target, _bundle(1.0))
    monkeypatch.setattr(bundle_module, "save_file", lambda t, p: _half_then_enospc(Path(p)))
    with pytest.raises(UserError, match=r"cannot write model bundle .*: No space left on device"):
        save_bundle(target, _bundle(2.0))
    monkeypatch.undo()
    assert load_bundle(target).metadata["value"] == 1.0
    assert _no_temporaries(tmp_path) == []


class _FullDiskFile:
    """A text file that fills the disk after a few writes."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "w", newline="")  # noqa: SIM115 (closed by __exit__)
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        return self.handle.write(text)

    @property
    def path(self) -> str:
        return self.handle.name

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_full_disk_predict_csv(
    tiny_fabric_model: Path, tiny_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from simclr_ad import predict

    out = tmp_path / "preds.csv"
    out.write_text("the previous predictions\n")
    monkeypatch.setattr(predict, "_open_output", lambda path: _FullDiskFile(path))
    argv = ["-q", "predict", "--model", str(tiny_fabric_model), str(tiny_data / "fabric" / "test")]
    assert main([*argv, "--out", str(out), "--overwrite", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no space left on the device while writing ")
    assert out.read_text() == "the previous predictions\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]


@pytest.mark.parametrize("failure", ["interrupt", "enospc"])
def test_interrupted_export_keeps_the_old_file(
    tiny_fabric_model: Path, tmp_path: Path, monkeypatch, capsys, failure: str
) -> None:
    from simclr_ad import export_onnx

    out = tmp_path / "fabric.onnx"
    out.write_bytes(b"the previous export")

    def broken_trace(graph: object, images: object, path: Path) -> None:
        path.write_bytes(b"half an onnx graph")
        if failure == "interrupt":
            raise KeyboardInterrupt
        _enospc()

    monkeypatch.setattr(export_onnx, "_trace_to_file", broken_trace)
    argv = ["-q", "export", "--model", str(tiny_fabric_model), "--out", str(out), "--overwrite"]
    assert main(argv) == (130 if failure == "interrupt" else 2)
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["fabric.onnx"]
    if failure == "enospc":
        assert "error: no space left on the device" in capsys.readouterr().err
