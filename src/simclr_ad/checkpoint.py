"""Training checkpoints: written atomically, hashed, read back without unpickling arbitrary objects.

A checkpoint records the SHA-256 of its contents (tensors by their bytes, numbers, strings,
nested containers), so flipped bytes, an edited value or a hand-made file are refused with one
line instead of being trained on.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr_ad.errors import UserError

CHECKPOINT_FORMAT = 2  # 2: a SHA-256 of the contents under "sha256"
HASH_KEY = "sha256"
REQUIRED_ENTRIES: dict[str, type] = {
    "epoch": int,
    "total_epochs": int,
    "config": dict,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
}
RNG_ENTRIES = frozenset({"torch", "cuda", "python", "numpy", "numpy_pos"})


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
    """Write a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically.

    The file holds ``payload`` plus its format and the SHA-256 of its contents
    (:func:`payload_sha256`), which :func:`load_checkpoint` checks.
    """
    body = {"format": CHECKPOINT_FORMAT, **payload}
    body[HASH_KEY] = payload_sha256(body)
    atomic_write(path, lambda tmp: torch.save(body, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises:
        UserError: one line for a missing, empty, unreadable, foreign, older, newer, edited or
            corrupt file, or one without the entries training needs.
    """
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UserError(f"checkpoint {path} is unreadable or corrupt: {reason}") from None
    _check_format(path, payload)
    if payload_sha256(payload) != payload[HASH_KEY]:
        raise UserError(
            f"checkpoint {path} does not match its recorded hash (corrupt or edited); "
            "use an earlier checkpoint"
        )
    _check_entries(path, payload)
    return payload


def _check_format(path: Path, payload: object) -> None:
    """One line unless ``payload`` is a hashed checkpoint of the format this version writes."""
    if not isinstance(payload, dict) or "format" not in payload:
        raise UserError(f"{path} is not a simclr-ad checkpoint")
    version = payload["format"]
    if type(version) is not int:
        raise UserError(f"checkpoint {path} has an invalid format {version!r}")
    if version > CHECKPOINT_FORMAT:
        raise UserError(
            f"checkpoint {path} has format {version}, newer than this simclr-ad "
            f"reads ({CHECKPOINT_FORMAT}); upgrade simclr-ad"
        )
    if version < CHECKPOINT_FORMAT or not isinstance(payload.get(HASH_KEY), str):
        raise UserError(
            f"checkpoint {path} has format {version}, without a content hash, and cannot be "
            f"verified; this simclr-ad reads format {CHECKPOINT_FORMAT}"
        )


def _check_entries(path: Path, payload: dict[str, Any]) -> None:
    """One line naming the entries a training checkpoint lacks or holds with the wrong type."""
    missing = [key for key in REQUIRED_ENTRIES if key not in payload]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; not a training checkpoint")
    wrong = [
        key
        for key, kind in REQUIRED_ENTRIES.items()
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool)
    ]
    rng = payload.get("rng")
    if rng is not None and not (isinstance(rng, dict) and rng.keys() >= RNG_ENTRIES):
        wrong.append("rng")
    if wrong:
        raise UserError(f"checkpoint {path} has malformed entries: {', '.join(wrong)}")


def payload_sha256(payload: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents (without its own hash entry), independent of pickling.

    Walks the nested dicts, lists and tuples in order, hashing each key, the type and value of
    each number or string, and the dtype, shape and raw bytes of each tensor.
    """
    digest = hashlib.sha256()
    _hash_value({k: v for k, v in payload.items() if k != HASH_KEY}, digest)
    return digest.hexdigest()


def _hash_value(value: object, digest: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}:".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key, item in value.items():
            digest.update(f"{type(key).__name__}{key!r}=".encode())
            _hash_value(item, digest)
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _hash_value(item, digest)
    elif value is None or isinstance(value, bool | int | float | str):
        digest.update(f"{type(value).__name__}{value!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold {type(value).__name__}")


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
