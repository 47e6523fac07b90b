"""Optional parts of the test environment: skipped on a developer's machine, required under CI.

A developer without the ``local`` extra (or the SmolLM2 weights, Chromium, or node) gets skips that
say how to install what is missing. Under CI (``CI`` set, as CI services do), or with
``ARKOR_REQUIRE_ENGINE=1`` for the engine, ``ARKOR_REQUIRE_BROWSER=1`` for the browser and
``ARKOR_REQUIRE_OIDC=1`` for the OpenID provider (node + npm's oidc-provider; ``scripts/test.sh``
sets all three), the same absence fails the run: a broken install must not
turn CI green by skipping every engine, training, SDK or Studio test.
Read once at import, before any test sets ``CI`` for the code under test.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

LOCAL_EXTRA = "pip install 'arkor[local]'"
ENGINE = "ARKOR_REQUIRE_ENGINE"
BROWSER = "ARKOR_REQUIRE_BROWSER"
OIDC = "ARKOR_REQUIRE_OIDC"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


# Each variable's verdict, taken before the isolation fixture sets CI=1 for every test.
_REQUIRED = {
    variable: _ci() or os.environ.get(variable) == "1" for variable in (ENGINE, BROWSER, OIDC)
}


def unavailable(reason: str, variable: str = ENGINE) -> NoReturn:
    """Skip (the whole module when called at import), or fail where CI or ``variable`` demands it."""
    if _REQUIRED[variable]:
        pytest.fail(f"{reason} (CI / {variable}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need(module: str, reason: str) -> ModuleType:
    """``module`` imported; when it cannot be, :func:`unavailable` with ``reason`` and the cause."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{reason}: {LOCAL_EXTRA} (import {module} failed: {error})")
