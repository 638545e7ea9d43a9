"""Progress bars for the long steps (training epochs, the detector's fit, evaluation, predict).

One rule for every bar, so none ends up in a log file or a pipe: a bar is drawn on standard
error only when standard error is a terminal, only by rank 0 under torchrun (one bar, not one
per process), and only where the package's INFO messages show (``-q`` hides both). Bars clear
themselves when done; the log lines stay. A command that streams its results to the terminal
turns its bar off (``enabled``), so the bar never lands between them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from typing import IO, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

T = TypeVar("T")

PACKAGE_LOGGER = "simclr_ad"


def _is_rank_zero() -> bool:
    """torchrun sets RANK in every process it starts; a plain process is rank 0."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _is_terminal(stream: IO[str] | None) -> bool:
    """``stream.isatty()``; False for None (``pythonw``) or a closed stream."""
    try:
        return stream is not None and stream.isatty()
    except ValueError:
        return False


def progress_enabled() -> bool:
    """Whether a bar may be drawn now: standard error a terminal, rank 0, INFO shown."""
    return (
        _is_terminal(sys.stderr)
        and _is_rank_zero()
        and logging.getLogger(PACKAGE_LOGGER).isEnabledFor(logging.INFO)
    )


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
) -> tqdm[T]:
    """A tqdm bar on standard error, drawn only where :func:`progress_enabled` allows.

    A disabled bar is the same object doing nothing, so callers update it unconditionally.

    Args:
        iterable: what to iterate over, or None to call ``update`` by hand.
        desc: what the step is, e.g. ``"bolt: features"``.
        total: the count the bar fills to (default: ``len(iterable)`` where it has one).
        unit: what is counted (``img``, ``batch``...).
        enabled: the caller's own condition (e.g. no bar while results stream to the terminal).
    """
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not (enabled and progress_enabled()),
    )


def log_above_bars() -> contextlib.AbstractContextManager[None]:
    """While active, console log lines are written above the bars instead of through them
    (where the root logger prints to the console at all: a library caller's own handlers stay
    as they are)."""
    console = any(
        isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)
        for h in logging.root.handlers
    )
    return logging_redirect_tqdm() if console else contextlib.nullcontext()
