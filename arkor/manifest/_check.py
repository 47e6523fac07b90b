"""Check what a config points at without running any of the user's code.

``arkor validate`` runs these after the schema check: the dataset file is there and has a
type Arkor reads, and every callback module can be found on the project path. Finding a
module walks the import path with :class:`importlib.machinery.PathFinder`, one dotted
part at a time, so no package ``__init__`` is executed (``importlib.util.find_spec`` of a
dotted name would import the parents). ``arkor build`` then imports and checks for real.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

from arkor._formats import FILE_SUFFIXES
from arkor.config import (
    Callbacks,
    ConfigError,
    ConfigIssue,
    FileDataset,
    LoadedConfig,
    load_config,
)
from arkor.manifest._callbacks import CALLBACK_EVENTS, split_target


def validate_project(
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """What ``arkor validate`` checks: the config, then what it points at (no user code run)."""
    loaded = load_config(config, overrides, cwd=cwd, env=env)
    check_project(loaded)
    return loaded


def check_project(loaded: LoadedConfig) -> None:
    """Raise one :class:`ConfigError` for a missing dataset file or callback module."""
    issues = [
        issue
        for issue in (dataset_file_issue(loaded), *_callback_issues(loaded))
        if issue is not None
    ]
    if issues:
        raise ConfigError(issues)


def dataset_file(loaded: LoadedConfig, dataset: FileDataset) -> Path:
    """The local dataset file, resolved against the config file that names it."""
    origin = loaded.raw.origin(("trainer", "dataset", "path"))
    base = origin.file.parent if origin.file is not None else loaded.root
    return (base / dataset.path).resolve()


def dataset_file_issue(loaded: LoadedConfig) -> ConfigIssue | None:
    """Why the local dataset file cannot be read, located at ``trainer.dataset.path``."""
    dataset = loaded.config.trainer.dataset
    if not isinstance(dataset, FileDataset):
        return None
    file = dataset_file(loaded, dataset)
    key = ("trainer", "dataset", "path")
    if not file.exists():
        problem = (
            f"the dataset file {file} does not exist (paths are relative to the config file "
            "that names them)."
        )
    elif not file.is_file():
        problem = f"the dataset path {file} is not a regular file."
    elif file.suffix.lower() not in FILE_SUFFIXES:
        problem = (
            f"unsupported dataset file type `{file.suffix or '(none)'}`: use .jsonl, .json, "
            ".csv or .parquet."
        )
    else:
        return None
    return ConfigIssue(problem, loaded.raw.locate(key), key)


def _callback_issues(loaded: LoadedConfig) -> list[ConfigIssue]:
    callbacks: Callbacks = loaded.config.trainer.callbacks
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for event in CALLBACK_EVENTS:
        target = getattr(callbacks, event)
        if target is None:
            continue
        module = split_target(target)[0]
        if module in seen:
            continue
        seen.add(module)
        problem = find_module_problem(module, loaded.root)
        if problem is not None:
            path = ("trainer", "callbacks", event)
            issues.append(ConfigIssue(problem, loaded.raw.locate(path), path))
    return issues


def find_module_problem(name: str, root: Path) -> str | None:
    """Why ``name`` cannot be imported with ``root`` first on the path, found without importing."""
    parts = name.split(".")
    spec: ModuleSpec | None = PathFinder.find_spec(parts[0], [str(root), *sys.path])
    if spec is None:
        try:  # a built-in module, or one an installed finder provides; imports nothing
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            spec = None
    for depth in range(1, len(parts)):
        if spec is None:
            return _missing(name, parts[:depth], root)
        if spec.submodule_search_locations is None:
            return (
                f"`{'.'.join(parts[:depth])}` is a module, not a package, so it cannot contain "
                f"`{parts[depth]}`. Check the callback's module path."
            )
        spec = PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations)
        )
    return _missing(name, parts, root) if spec is None else None


def _missing(name: str, parts: list[str], root: Path) -> str:
    return (
        f"cannot find the module `{name}`: there is no `{'.'.join(parts)}` in the project root "
        f"{root} or the installed packages. Check the spelling, and that the package folder is "
        "in the project."
    )
