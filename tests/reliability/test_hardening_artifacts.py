"""Issue 16, saved artifacts: checkpoints are hashed, every bundle format is verified.

Each test failed before its fix: a checkpoint with flipped bytes was trained on, an empty or
hand-made one raised IndexError/KeyError/TypeError, and a bundle claiming ``format_version`` 1,
0 or true skipped its metadata hash, so an edited threshold was accepted.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from simclr_ad.bundle import Bundle, load_bundle, save_bundle
from simclr_ad.checkpoint import load_checkpoint, save_checkpoint
from simclr_ad.cli import main
from simclr_ad.errors import UserError
from tests.reliability.corpus import MARKER, training_payload


def _one_line(error: pytest.ExceptionInfo[UserError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_checkpoint_round_trip_keeps_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, training_payload(epoch=2))
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2 and loaded["config"] == {"lr": 0.001}
    assert torch.equal(loaded["model"]["w"], torch.full((256,), MARKER))


def test_checkpoint_with_flipped_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, training_payload())
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<f", MARKER) * 4)  # inside the weight tensor's bytes
    data[at + 1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert "does not match its recorded hash" in _one_line(error)


def test_checkpoint_with_an_edited_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, training_payload())
    payload = torch.load(path, weights_only=True)
    payload["config"]["lr"] = 10.0  # edited, hash kept
    torch.save(payload, path)
    with pytest.raises(UserError, match="does not match its recorded hash"):
        load_checkpoint(path)


def test_empty_checkpoint_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert _one_line(error) == f"checkpoint {path} is empty (0 bytes)"


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ({"format": 1, "epoch": 1}, "without a content hash"),
        ({"format": "x"}, "invalid format 'x'"),
        ({"format": True, "sha256": "0" * 64}, "invalid format True"),
        ({"format": 2}, "without a content hash"),
        ({"epoch": 1}, "not a simclr-ad checkpoint"),
        ([1, 2, 3], "not a simclr-ad checkpoint"),
    ],
    ids=["unhashed-v1", "text-format", "bool-format", "no-hash", "no-format", "a-list"],
)
def test_hand_made_checkpoint_is_one_line(tmp_path: Path, contents: object, expected: str) -> None:
    path = tmp_path / "hand.ckpt"
    torch.save(contents, path)
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert expected in _one_line(error)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": None}, "malformed entries: model"),
        ({"epoch": "one"}, "malformed entries: epoch"),
        ({"epoch": True}, "malformed entries: epoch"),
        ({"rng": {"torch": torch.zeros(3)}}, "malformed entries: rng"),
    ],
    ids=["model-none", "epoch-text", "epoch-bool", "rng-partial"],
)
def test_checkpoint_with_malformed_entries_is_refused(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    path = tmp_path / "odd.ckpt"
    save_checkpoint(path, training_payload() | change)
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert expected in _one_line(error)


def test_checkpoint_without_training_entries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "partial.ckpt"
    save_checkpoint(path, {"epoch": 1, "model": {}})
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert "lacks total_epochs, config, optimizer, scheduler" in _one_line(error)


@pytest.mark.parametrize("contents", [b"", b"\x00" * 64], ids=["zero-bytes", "zeros"])
def test_train_resume_from_a_bad_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], contents: bytes
) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(contents)
    assert main(["-q", "train", "--resume", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: checkpoint {path} is ")


def _saved_bundle(folder: Path) -> dict[str, Any]:
    metadata = {"categories": ["a"], "detector": {"thresholds": {"a": {"patch": 1.5}}}}
    save_bundle(folder, Bundle({"w": torch.ones(4)}, metadata))
    return json.loads((folder / "model.json").read_text())


@pytest.mark.parametrize("version", [1, 0, True, -1, 2.0, "2", None])
def test_bundle_of_an_unsupported_format_is_refused(tmp_path: Path, version: object) -> None:
    folder = tmp_path / "model"
    meta = _saved_bundle(folder)
    meta["format_version"] = version
    meta["detector"]["thresholds"]["a"]["patch"] = 1e9  # the edit an old format would hide
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError) as error:
        load_bundle(folder)
    assert f"model bundle {folder}" in _one_line(error)


def test_bundle_edited_threshold_is_refused_at_the_current_format(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    meta = _saved_bundle(folder)
    assert load_bundle(folder).metadata["detector"]["thresholds"]["a"]["patch"] == 1.5
    meta["detector"]["thresholds"]["a"]["patch"] = 1e9
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not match its recorded hash"):
        load_bundle(folder)
