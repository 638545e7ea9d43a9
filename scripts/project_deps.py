"""pyproject.toml's dependency lists for scripts/bootstrap.sh, on every Python the project supports.

Python 3.10 has no ``tomllib``; it then uses ``tomli`` (the same parser, where installed) or the
copy of it that pip vendors, so a bare Python 3.10 with pip reads the file too.

Usage: python scripts/project_deps.py key|requirements [PYPROJECT]
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from types import ModuleType
from typing import Any

PROJECT = "simclr-ad"
TOML_PARSERS = ("tomllib", "tomli", "pip._vendor.tomli")


class NoTomlParserError(RuntimeError):
    """None of ``TOML_PARSERS`` imports."""


def toml_parser() -> ModuleType:
    """The first TOML parser of ``TOML_PARSERS`` that this Python has."""
    for name in TOML_PARSERS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise NoTomlParserError(
        f"Python {sys.version.split()[0]} has none of {', '.join(TOML_PARSERS)} to read "
        "pyproject.toml: pip install tomli, or use Python 3.11+"
    )


def load_project(path: str = "pyproject.toml") -> dict[str, Any]:
    """The ``[project]`` table of ``path``."""
    with open(path, "rb") as file:
        return toml_parser().load(file)["project"]


def cache_key(project: dict[str, Any], version: tuple[int, int]) -> str:
    """16 hex digits naming one dependency set on one Python ``major.minor``."""
    deps = [project["dependencies"], project.get("optional-dependencies", {})]
    text = json.dumps([deps, list(version)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def requirements(project: dict[str, Any]) -> list[str]:
    """The runtime dependencies and those of every extra: what the tests need.

    An extra's entries that name the project itself (``all = ["simclr-ad[serve,export]"]``) are
    left out: they only repeat other extras, and pip would look for the project on the index.
    """
    extras = project.get("optional-dependencies", {})
    found = list(project["dependencies"])
    for entries in extras.values():
        found += [req for req in entries if not _names_project(req)]
    return list(dict.fromkeys(found))


def _names_project(requirement: str) -> bool:
    name = requirement.split("[")[0].split(";")[0]
    for sep in "<>=!~ ":
        name = name.split(sep)[0]
    return name.strip().lower().replace("_", "-") == PROJECT


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in ("key", "requirements"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        project = load_project(*argv[1:])
    except NoTomlParserError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    if argv[0] == "key":
        print(cache_key(project, (sys.version_info[0], sys.version_info[1])))
    else:
        print("\n".join(requirements(project)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
