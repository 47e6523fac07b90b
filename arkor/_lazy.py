"""Lazy package exports: a name's module is imported the first time the name is used.

Keeps ``import arkor`` (and ``arkor --help``) from paying for pydantic, httpx or torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, str], exported: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, loading each name from ``modules[name]``."""

    def __getattr__(name: str) -> Any:
        module_name = modules.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exported)

    return __getattr__, __dir__
