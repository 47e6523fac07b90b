"""Arkor: describe, reproduce and run a LoRA fine-tune from a file.

The public API is loaded lazily so that ``arkor --version`` and ``arkor --help``
stay fast: importing :mod:`arkor` costs nothing until a name is used.

>>> import arkor
>>> config = arkor.load_config("arkor.toml")          # doctest: +SKIP
>>> manifest_path = arkor.build("arkor.toml")         # doctest: +SKIP
>>> manifest = arkor.read_manifest(manifest_path)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'arkor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
