"""The root of Arkor's exception tree.

::

    ArkorError                 exit 1 unless a subclass says otherwise
    ├── UsageError             exit 2: a flag, argument or command was used wrongly
    ├── ConfigError            exit 2: the config is invalid (arkor.config, with located issues)
    └── ManifestError          exit 2: the manifest is missing, tampered with, stale or too new

Every error carries a message that is one paragraph: what is wrong, where, and how to
fix it. The CLI prints ``str(error)`` and exits with ``error.exit_code``.
"""

from __future__ import annotations


class ArkorError(Exception):
    """Base class of every error Arkor raises on purpose."""

    exit_code: int = 1


class UsageError(ArkorError):
    """A command, flag or argument was used wrongly."""

    exit_code = 2


class ManifestError(ArkorError):
    """The build manifest cannot be used as it is."""

    exit_code = 2


__all__ = ["ArkorError", "ManifestError", "UsageError"]
