"""``ARKOR_*`` settings shared by the client and the plane: the default port, whole numbers."""

from __future__ import annotations

import os
import re

from arkor.errors import UsageError

DEFAULT_PORT = 8765
"""Where ``arkor serve`` listens and where the client looks for it, unless ``ARKOR_PORT`` says."""


def env_int(
    name: str, *, minimum: int, maximum: int | None = None, example: str, default: str
) -> int | None:
    """The whole number in ``$name``; None when it is unset or empty.

    Anything else (``abc``, ``1.5``, out of range) is a :class:`UsageError` naming the
    variable and what it takes, since a raw ``int()`` error names neither.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    number = int(value) if re.fullmatch(r"[+-]?[0-9]{1,18}", value) else None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise UsageError(
            f"{name}={value} cannot be used: {name} takes a whole number {bounds} "
            f"(e.g. {name}={example}). Set it to one, or unset it to use {default}."
        )
    return number
