"""Headless Chromium for the browser tests (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # where Debian's package puts it
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> str:
    """The browser's path: ``chromium`` on the PATH, else Debian's.

    Where there is none the test is skipped with the reason, except under CI (``CI=true``,
    as CI and ``../shared/tools/fresh-clone-check`` set it): CI installs the browser, so there
    a missing one fails the test instead of silently testing less.
    """
    found = shutil.which("chromium") or (str(CHROMIUM) if CHROMIUM.is_file() else None)
    if found is not None:
        return found
    reason = (
        f"headless Chromium is missing (no chromium on the PATH, no {CHROMIUM}): install "
        "Debian's chromium package (make browser, as root) to run the browser tests"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true, where they must run")
    pytest.skip(reason)
