"""Arkor: describe, reproduce and run a LoRA fine-tune from a file.

The public API is loaded lazily so that ``arkor --version`` and ``arkor --help``
stay fast: importing :mod:`arkor` costs nothing until a name is used.

>>> import arkor
>>> config = arkor.load_config("arkor.toml")          # doctest: +SKIP
>>> manifest_path = arkor.build("arkor.toml")         # doctest: +SKIP
>>> manifest = arkor.read_manifest(manifest_path)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arkor._lazy import lazy_exports
from arkor._version import __version__

if TYPE_CHECKING:
    from arkor.config import ArkorConfig, ConfigError, LoadedConfig, load_config
    from arkor.errors import ArkorError, ManifestError, UsageError
    from arkor.manifest import (
        Manifest,
        Staleness,
        build,
        check_staleness,
        read_fresh_manifest,
        read_manifest,
    )

__all__ = [
    "ArkorConfig",
    "ArkorError",
    "ConfigError",
    "LoadedConfig",
    "Manifest",
    "ManifestError",
    "Staleness",
    "UsageError",
    "__version__",
    "build",
    "check_staleness",
    "load_config",
    "read_fresh_manifest",
    "read_manifest",
]

_LAZY = {
    "ArkorConfig": "arkor.config",
    "ConfigError": "arkor.config",
    "LoadedConfig": "arkor.config",
    "load_config": "arkor.config",
    "Manifest": "arkor.manifest",
    "Staleness": "arkor.manifest",
    "build": "arkor.manifest",
    "read_manifest": "arkor.manifest",
    "read_fresh_manifest": "arkor.manifest",
    "check_staleness": "arkor.manifest",
    "ArkorError": "arkor.errors",
    "ManifestError": "arkor.errors",
    "UsageError": "arkor.errors",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
