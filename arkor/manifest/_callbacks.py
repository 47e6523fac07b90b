"""Resolve the code a config names: callbacks and custom metrics, imported, checked, digested.

The project root goes on ``sys.path`` first, as it will when ``arkor start`` calls them,
so ``my_project.callbacks:on_log`` finds ``<root>/my_project/callbacks.py``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from arkor._fs import sha256_file
from arkor.config import (
    BUILTIN_METRICS,
    Callbacks,
    ConfigError,
    ConfigIssue,
    Eval,
    KeyPath,
    RawConfig,
)

CALLBACK_EVENTS = (
    "on_started",
    "on_log",
    "on_checkpoint",
    "on_eval",
    "on_completed",
    "on_failed",
)


@dataclass(frozen=True)
class ResolvedCallback:
    """A callback or custom metric that imports and takes its arguments, with its module's digest."""

    target: str
    module: str
    attribute: str
    file: Path | None
    sha256: str | None


def split_target(target: str) -> tuple[str, str]:
    """``pkg.mod:fn`` or ``pkg.mod.fn`` → ``("pkg.mod", "fn")``."""
    if ":" in target:
        module, _, attribute = target.partition(":")
        return module, attribute
    module, _, attribute = target.rpartition(".")
    return module, attribute


def load_callback(target: str, root: Path) -> Callable[..., Any]:
    """Import the function ``target`` names, with ``root`` on ``sys.path``."""
    return _attribute(_import(split_target(target)[0], root), target)


def _import(module_name: str, root: Path) -> ModuleType:
    with _on_sys_path(root):
        _forget_shadowed(module_name, root)
        return importlib.import_module(module_name)


def _attribute(module: ModuleType, target: str) -> Callable[..., Any]:
    value: Any = module
    for part in split_target(target)[1].split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"`{target}` is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CodeTarget:
    """A dotted path the config names, where, and what its function must accept."""

    key: KeyPath
    target: str
    label: str
    """How messages name it: ``on_log``, ``metric pkg.mod:f1``."""
    arguments: int
    usage: str
    """How it is called, for the message when it cannot be: ``def on_log(ctx): ...``."""


def callback_targets(callbacks: Callbacks) -> list[CodeTarget]:
    """The callbacks ``callbacks`` names, as targets taking the event's context."""
    return [
        CodeTarget(
            ("trainer", "callbacks", event),
            target,
            event,
            1,
            f"exactly one argument, the event's context (def {event}(ctx): ...)",
        )
        for event in CALLBACK_EVENTS
        if (target := getattr(callbacks, event)) is not None
    ]


def metric_targets(evaluation: Eval | None) -> list[CodeTarget]:
    """The custom metrics (dotted paths) of ``trainer.eval.metrics``, by their list position."""
    if evaluation is None:
        return []
    return [
        CodeTarget(
            ("trainer", "eval", "metrics", index),
            name,
            f"metric {name}",
            3,
            "three arguments, the answer, the reference and the row "
            "(def metric(prediction, reference, row): ...)",
        )
        for index, name in enumerate(evaluation.metrics)
        if name not in BUILTIN_METRICS
    ]


def resolve_targets(targets: list[CodeTarget], raw: RawConfig) -> dict[KeyPath, ResolvedCallback]:
    """Import and check every target; raise one :class:`ConfigError` listing all failures.

    Each module is imported once: a module that fails to import is one problem, reported
    at the first target that names it, however many targets live in it. Callbacks and
    custom metrics go through here together, so a module both use is imported once too.
    """
    resolved: dict[KeyPath, ResolvedCallback] = {}
    issues: list[ConfigIssue] = []
    cause: Exception | None = None
    modules: dict[str, ModuleType | Exception] = {}
    for entry in targets:
        target, path = entry.target, entry.key
        module_name = split_target(target)[0]
        if module_name not in modules:
            try:
                modules[module_name] = _import(module_name, raw.root)
            except Exception as error:  # the user's module may raise anything while importing
                modules[module_name] = error
                cause = cause or error
                others = _others_naming(targets, module_name, entry)
                issues.append(
                    ConfigIssue(
                        _import_problem(target, error, raw.root) + others, raw.locate(path), path
                    )
                )
        module = modules[module_name]
        if isinstance(module, Exception):
            continue
        try:
            function = _attribute(module, target)
        except (AttributeError, TypeError) as error:
            issues.append(
                ConfigIssue(_import_problem(target, error, raw.root), raw.locate(path), path)
            )
            continue
        if not _takes_arguments(function, entry.arguments):
            issues.append(
                ConfigIssue(
                    f"`{target}` must accept {entry.usage}; its signature is "
                    f"{_signature(function)}.",
                    raw.locate(path),
                    path,
                )
            )
            continue
        attribute = split_target(target)[1]
        module_file = getattr(module, "__file__", None)
        file = Path(module_file).resolve() if module_file else None
        digest = sha256_file(file)[0] if file and file.is_file() else None
        resolved[path] = ResolvedCallback(target, module_name, attribute, file, digest)
    if issues:
        raise ConfigError(issues) from cause  # `--debug` shows the user's traceback too
    return resolved


def _others_naming(targets: list[CodeTarget], module_name: str, entry: CodeTarget) -> str:
    """`` (`on_log` and `on_failed` name the same module.)`` for the others in a broken module."""
    others = list(
        dict.fromkeys(
            other.label
            for other in targets
            if other is not entry and split_target(other.target)[0] == module_name
        )
    )
    if not others:
        return ""
    names = " and ".join(f"`{name}`" for name in others)
    return f" ({names} {'names' if len(others) == 1 else 'name'} the same module.)"


def _import_problem(target: str, error: Exception, root: Path) -> str:
    module_name, attribute = split_target(target)
    missing = error.name if isinstance(error, ModuleNotFoundError) else None
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        return (
            f"cannot import `{module_name}`: no module named `{missing}` in the project root "
            f"{root} or the installed packages. Check the spelling, and that the package folder "
            "has an __init__.py."
        )
    if isinstance(error, AttributeError):
        return f"`{module_name}` has no `{attribute}`. Check the function's name."
    if isinstance(error, TypeError):
        return f"{error}."
    return f"importing `{module_name}` raised {type(error).__name__}: {error}. Fix the module so it imports."


def _takes_arguments(function: Callable[..., Any], count: int) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True  # builtins without a signature: trust them
    try:
        signature.bind(*(object() for _ in range(count)))
    except TypeError:
        return False
    return True


def _signature(function: Callable[..., Any]) -> str:
    try:
        return f"({', '.join(inspect.signature(function).parameters)})"
    except (TypeError, ValueError):
        return "unknown"


@contextmanager
def _on_sys_path(root: Path) -> Iterator[None]:
    entry = str(root)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(entry)


_PROJECT_ROOTS: set[Path] = set()
"""Every project root callbacks were imported from in this process."""


def _forget_shadowed(module_name: str, root: Path) -> None:
    """Drop cached modules another project, or an older copy of this one, provided.

    One process may build several projects whose packages share a name, or rebuild after
    an edit; without this the cached module would be checked instead of the file on disk,
    or a project lacking the package would borrow another project's.
    """
    _PROJECT_ROOTS.add(root.resolve())
    parts = module_name.split(".")
    for depth in range(len(parts), 0, -1):
        name = ".".join(parts[:depth])
        cached = sys.modules.get(name)
        if cached is None:
            continue
        cached_file = getattr(cached, "__file__", None)
        from_a_project = cached_file is not None and any(
            Path(cached_file).resolve().is_relative_to(project) for project in _PROJECT_ROOTS
        )
        if from_a_project:
            for stale in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
                del sys.modules[stale]
