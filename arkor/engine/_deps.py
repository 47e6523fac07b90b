"""The engine's heavy libraries live in the ``local`` extra; say how to get them when missing."""

from __future__ import annotations

import importlib.util

from arkor.errors import ArkorError

LOCAL_EXTRA_HINT = "pip install 'arkor[local]'"
_LOCAL_MODULES = ("torch", "transformers", "peft", "datasets", "accelerate", "safetensors")


class MissingExtraError(ArkorError):
    """A feature needs the ``local`` extra, which is not installed."""


def require_local() -> None:
    """Raise a one-paragraph error naming the install command when the engine can't run."""
    missing = [name for name in _LOCAL_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"Training and inference on this machine need {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with "
            f"`{LOCAL_EXTRA_HINT}` (on a CPU-only machine, install the CPU build of torch first)."
        )
