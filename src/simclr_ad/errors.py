"""The one exception type for bad user input: shown as a single line, exit code 2."""

from __future__ import annotations

import importlib.util


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message names it and what is wrong.

    The CLI prints ``error: <message>`` on stderr and exits with code 2, without a traceback.
    """


# pyproject.toml's extras for what only some commands need: import name -> distribution name
EXTRAS: dict[str, dict[str, str]] = {
    "serve": {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"},
    "export": {"onnx": "onnx", "onnxruntime": "onnxruntime"},
}


def require_extra(extra: str, needed_by: str) -> None:
    """A UserError naming the extra to install when one of its packages is missing.

    Only the packages' presence is checked (nothing is imported), so a command says what to
    install before any work, not with an ImportError's traceback halfway through.

    Args:
        extra: a key of ``EXTRAS``.
        needed_by: what needs it, as the user asked for it (``simclr-ad serve``).
    """
    missing = [dist for name, dist in EXTRAS[extra].items() if not _installed(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(
            f"{needed_by} needs {', '.join(missing)}, which {verb} not installed: "
            f"pip install 'simclr-ad[{extra}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False
