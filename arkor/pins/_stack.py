"""The training stack: the versions of the libraries that decide what a run computes."""

from __future__ import annotations

from importlib import metadata

STACK_PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets")


def installed_stack() -> dict[str, str] | None:
    """Each stack package's installed version, or None when any is missing (no engine extra).

    Read from the installed distributions' metadata: nothing is imported.
    """
    versions: dict[str, str] = {}
    for package in STACK_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            return None
    return versions


def stack_differences(built: dict[str, str], running: dict[str, str]) -> list[str]:
    """``"transformers 5.20.0 at build, 5.24.0 here"`` for each package whose release differs.

    A local build label (``2.13.0+cpu`` against ``2.13.0+cu128``) is the same release
    built for other hardware, not a different stack.
    """
    return [
        f"{package} {version} at build, {running.get(package, 'not installed')} here"
        for package, version in sorted(built.items())
        if _release(version) != _release(running.get(package, ""))
    ]


def _release(version: str) -> str:
    return version.partition("+")[0]
