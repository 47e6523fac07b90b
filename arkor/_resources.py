"""Locate the data that ships with Arkor: the JSON Schema and the ``arkor init`` templates.

In a wheel they live in ``arkor/_data/``; in a source checkout (editable install, tests)
they live at the repository root. Both layouts resolve through these functions.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"Arkor's `{name}` folder is missing from this installation "
        f"(looked in {_PACKAGE_DIR / '_data'} and {_PACKAGE_DIR.parent}); reinstall arkor."
    )


def schemas_dir() -> Path:
    """The folder holding ``arkor.schema.json`` and ``catalog.json``."""
    return _data_dir("schemas")


def templates_dir() -> Path:
    """The folder holding one sub-folder per ``arkor init`` template."""
    return _data_dir("templates")


def source_checkout_root() -> Path | None:
    """The repository root when running from a source checkout, else ``None``."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "schemas").is_dir() else None
