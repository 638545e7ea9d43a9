import errno
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr_ad.bundle import BUNDLE_FORMAT, Bundle, load_bundle, save_bundle
from simclr_ad.checkpoint import (
    atomic_write,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from simclr_ad.errors import UserError


def _payload(epoch: int, **extra: object) -> dict[str, object]:
    """A minimal training checkpoint: the entries ``load_checkpoint`` requires, and ``extra``."""
    required = {"total_epochs": 3, "config": {}, "model": {}, "optimizer": {}, "scheduler": {}}
    return {"epoch": epoch, **required, **extra}


def test_checkpoint_round_trip_with_rng(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(path, _payload(2, rng=capture_rng_state(), w=torch.arange(3)))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = load_checkpoint(path)
    restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert loaded["epoch"] == 2 and torch.equal(loaded["w"], torch.arange(3))


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.ckpt")
    path = tmp_path / "c.ckpt"
    save_checkpoint(path, _payload(1, w=torch.zeros(1000)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(path)
    save_checkpoint(path, _payload(1))
    payload = torch.load(path, weights_only=True)
    payload["format"] = 99
    torch.save(payload, path)
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(path)


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, _payload(1))

    def full_disk(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="no space left"):
        atomic_write(path, full_disk)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def _bundle() -> Bundle:
    return Bundle({"model.w": torch.randn(4, 4), "model.n": torch.tensor(3)}, {"categories": ["a"]})


def test_bundle_round_trip_and_replace(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    first = _bundle()
    save_bundle(folder, first)
    loaded = load_bundle(folder)
    assert torch.equal(loaded.tensors["model.w"], first.tensors["model.w"])
    assert loaded.metadata["categories"] == ["a"]
    assert loaded.metadata["format_version"] == BUNDLE_FORMAT
    second = _bundle()
    save_bundle(folder, second)
    assert torch.equal(load_bundle(folder).tensors["model.w"], second.tensors["model.w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bundle_refuses_tampered_truncated_newer_missing(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    with pytest.raises(UserError, match="not a model bundle"):
        load_bundle(folder)
    save_bundle(folder, _bundle())
    tensors = folder / "model.safetensors"
    data = tensors.read_bytes()
    tensors.write_bytes(data[:-8] + b"\x00" * 8)
    with pytest.raises(UserError, match="does not match its recorded hash"):
        load_bundle(folder)
    tensors.write_bytes(data[:50])
    with pytest.raises(UserError, match="hash"):
        load_bundle(folder)
    tensors.write_bytes(data)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "format_version": 7}))
    with pytest.raises(UserError, match="newer"):
        load_bundle(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "categories": ["a", "b"]}))
    with pytest.raises(UserError, match=r"model\.json does not match its recorded hash"):
        load_bundle(folder)
    (folder / "model.json").write_text("{")
    with pytest.raises(UserError, match="corrupt"):
        load_bundle(folder)
