"""Checks of the output paths given on the command line, made before any work starts."""

from __future__ import annotations

from pathlib import Path

from simclr_ad.data.images import display_path
from simclr_ad.errors import UserError


def blocking_file(path: Path) -> Path | None:
    """The nearest existing folder above ``path`` when it is a file instead (so nothing can be
    created below it), else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a folder that exists or can be created; a UserError naming ``flag`` if not."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty; give the folder to write to")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {display_path(folder)} is a file, not a folder")
    blocker = blocking_file(folder)
    if blocker is not None:
        raise UserError(f"{flag} {display_path(folder)}: {display_path(blocker)} is a file")
    return folder


def check_output_file(path: Path, flag: str, *, parents: bool) -> None:
    """``path`` as a file to write: not a folder, below folders (``parents``: that may be made)."""
    if not str(path).strip() or path.is_dir():
        raise UserError(f"{flag} {display_path(path)} is a folder; give a file name")
    blocker = blocking_file(path)
    if blocker is not None:
        raise UserError(f"{flag} {display_path(path)}: {display_path(blocker)} is a file")
    if not parents and not path.parent.is_dir():
        raise UserError(
            f"{flag} {display_path(path)}: the folder {display_path(path.parent)} does not exist"
        )
