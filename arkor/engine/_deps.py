"""The engine's heavy libraries live in the ``local`` extra; say how to get them when missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from arkor.errors import ArkorError

LOCAL_EXTRA_HINT = "pip install 'arkor[local]'"
_LOCAL_MODULES = ("torch", "transformers", "peft", "datasets", "accelerate", "safetensors")
MIN_TRANSFORMERS = (5, 20)
"""``apply_chat_template(sanitize_control_tokens=True)`` first came in 5.20: before it, text
like ``<|im_end|>`` typed in a message would forge a turn of the conversation."""


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
    found = importlib.metadata.version("transformers")
    if _release(found) < MIN_TRANSFORMERS:
        wanted = ".".join(map(str, MIN_TRANSFORMERS))
        raise MissingExtraError(
            f"Arkor needs transformers {wanted} or newer, and {found} is installed: older "
            f"versions let control tokens typed in a chat message forge a turn. Upgrade with "
            f"`pip install -U 'transformers>={wanted}'`."
        )


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``5.20.0.dev0`` → ``(5, 20, 0)``."""
    numbers: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)
