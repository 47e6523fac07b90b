"""The engine tests need the local extra; without it they skip with the install command."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "torch", reason="the engine tests need the local extra: pip install 'arkor[local]'"
)
