"""Optional parts of the test environment: skipped on a developer's machine, required under CI.

A developer without the ``local`` extra (or the SmolLM2 weights) gets skips that say how
to install what is missing. Under CI (``CI`` set, as CI services do) or with
``ARKOR_REQUIRE_ENGINE=1`` (``scripts/test.sh`` sets it), the same absence fails the run:
a broken install must not turn CI green by skipping every engine, training and SDK test.
Read once at import, before any test sets ``CI`` for the code under test.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

LOCAL_EXTRA = "pip install 'arkor[local]'"


def _required() -> bool:
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    return ci or os.environ.get("ARKOR_REQUIRE_ENGINE") == "1"


REQUIRED = _required()


def unavailable(reason: str) -> NoReturn:
    """Skip (the whole module when called at import), or fail where CI demands the test run."""
    if REQUIRED:
        pytest.fail(f"{reason} (CI / ARKOR_REQUIRE_ENGINE=1 forbids skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need(module: str, reason: str) -> ModuleType:
    """``module`` imported; when it cannot be, :func:`unavailable` with ``reason`` and the cause."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{reason}: {LOCAL_EXTRA} (import {module} failed: {error})")
