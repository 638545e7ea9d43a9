"""The run folder of ``train``: one writer at a time, and an old run replaced only by a new one.

``claim_run_folder`` holds ``RUN/.lock`` (an ``fcntl.flock``: a second ``train`` into the same
folder is refused, and a killed run's lock goes with its process). With ``--overwrite`` the old
run's checkpoints, model, config and log are set aside in ``RUN/.previous-*``: they are deleted
once the new run succeeds or has written a checkpoint or its model, and put back if it fails
before that, so a mistyped flag never costs the old run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from simclr_ad.data.images import display_path
from simclr_ad.errors import UserError

LOCK_FILE = ".lock"
RUN_OUTPUTS = ("checkpoints", "model", "config.yaml", "train_log.csv")


def _has_run(out: Path) -> bool:
    """Whether ``out`` holds a checkpoint or a model."""
    return any((out / "checkpoints").glob("*.ckpt")) or (out / "model" / "model.json").exists()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"run folder {display_path(out)} is in use by another train (it holds "
                f"{LOCK_FILE}); wait for it to end or choose another --out"
            ) from None
        yield  # closing the file releases the lock


def _set_aside(out: Path) -> Path | None:
    """Move the old run's outputs into a new ``out/.previous-*`` folder (None: nothing to move)."""
    existing = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if not existing:
        return None
    previous = Path(tempfile.mkdtemp(prefix=".previous-", dir=out))
    for name in existing:
        os.replace(out / name, previous / name)
    return previous


def _put_back(out: Path, previous: Path) -> None:
    """Remove what the failed run wrote and restore the old run's outputs."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for kept in previous.iterdir():
        os.replace(kept, out / kept.name)


@contextlib.contextmanager
def claim_run_folder(out: Path, *, resuming_into_same: bool, overwrite: bool) -> Iterator[None]:
    """Hold ``out`` for one training run (see the module docstring).

    Refuses a folder that holds a run unless resuming into it or told to overwrite it.
    """
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        if _has_run(out) and not (resuming_into_same or overwrite):
            raise UserError(
                f"run folder {display_path(out)} already holds checkpoints or a model; use "
                f"--resume {display_path(out / 'checkpoints' / 'last.ckpt')} to continue it, "
                "--overwrite to replace it, or another --out"
            )
        for stale in (out / "checkpoints").glob(".*.ckpt.*.tmp"):  # a killed run's half file
            stale.unlink(missing_ok=True)
        previous = _set_aside(out) if overwrite and not resuming_into_same else None
        try:
            yield
        except BaseException:
            if previous is not None and not _has_run(out):
                _put_back(out, previous)
            raise
        finally:
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
