"""Training checkpoints: written atomically, read back without unpickling arbitrary objects."""

from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr_ad.errors import UserError

CHECKPOINT_FORMAT = 1


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, then rename onto ``path``: readers see the old or the new file.

    A failure (a full disk, a crash) leaves the previous ``path`` untouched and removes the
    temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device while writing {path}") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically."""
    atomic_write(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; one clear error for a missing or bad file."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise UserError(
            f"checkpoint {path} is unreadable or corrupt: {str(exc).splitlines()[0][:120]}"
        ) from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise UserError(f"{path} is not a simclr-ad checkpoint")
    if payload["format"] > CHECKPOINT_FORMAT:
        raise UserError(
            f"checkpoint {path} has format {payload['format']}, newer than this simclr-ad "
            f"reads ({CHECKPOINT_FORMAT}); upgrade simclr-ad"
        )
    return payload


def capture_rng_state() -> dict[str, Any]:
    """Every random number generator's state: torch (CPU and CUDA), Python and NumPy."""
    _, np_keys, np_pos, *_ = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
