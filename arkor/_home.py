"""Where Arkor keeps per-user state: ``~/.arkor``, or ``ARKOR_HOME`` when set."""

from __future__ import annotations

import os
from pathlib import Path


def arkor_home() -> Path:
    """The per-user folder (credentials, the model store, the local plane's data)."""
    configured = os.environ.get("ARKOR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".arkor"
