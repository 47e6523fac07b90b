"""``run_trainer``: what ``arkor start`` runs: a manifest, a config file, or a Python module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from arkor.errors import ManifestError, UsageError
from arkor.sdk._arkor import is_arkor
from arkor.sdk._dispatch import Callback
from arkor.sdk._trainer import Trainer, TrainingResult

if TYPE_CHECKING:
    from arkor.evals import CustomMetric
    from arkor.manifest import Manifest

_CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")


def trainer_from_manifest(
    manifest_path: Path | None = None, *, cloud_url: str | None = None
) -> Trainer:
    """A trainer replaying a verified, fresh manifest, its callbacks and custom metrics loaded."""
    from arkor.manifest import (
        manifest_path_for,
        project_root_of,
        read_fresh_manifest,
    )

    path = manifest_path or manifest_path_for(Path.cwd())
    manifest = read_fresh_manifest(path)
    root = project_root_of(path)
    modules: dict[str, ModuleType] = {}
    callbacks = _load_targets(
        {event: entry.target for event, entry in manifest.callbacks.items()}, root, modules
    )
    metrics = _custom_metrics(manifest, root, modules)
    dataset_file = root / manifest.dataset.path if manifest.dataset.path else None
    evaluation = manifest.eval
    eval_file = (
        root / evaluation.file.path
        if evaluation is not None and evaluation.file is not None and evaluation.file.path
        else None
    )
    return Trainer(
        manifest.job.name,
        manifest.job.config,
        callbacks=callbacks,
        dataset_file=dataset_file,
        eval_file=eval_file,
        custom_metrics=metrics,
        cloud_url=cloud_url or manifest.cloud_url,
        cwd=root,
    )


def load_custom_metrics(manifest: Manifest, root: Path) -> dict[str, CustomMetric]:
    """The custom metrics ``manifest`` records, by dotted path, imported from the project at ``root``.

    What scores an ``eval.completed`` on this machine (the worker runs no user code):
    :meth:`Trainer.wait`, ``arkor eval`` and ``arkor jobs show`` add them to the event.
    Raises :class:`~arkor.errors.ManifestError` when one no longer imports.
    """
    return _custom_metrics(manifest, root, {})


def _custom_metrics(
    manifest: Manifest, root: Path, modules: dict[str, ModuleType]
) -> dict[str, CustomMetric]:
    if manifest.eval is None or not manifest.eval.metrics:
        return {}
    targets = {metric.target: metric.target for metric in manifest.eval.metrics}
    try:
        return _load_targets(targets, root, modules)
    except Exception as error:  # the user's module may raise anything while importing
        raise ManifestError(
            f"Cannot load the custom metrics the manifest names ({', '.join(targets)}): "
            f"{type(error).__name__}: {error}. Fix the module, then run `arkor build`."
        ) from error


def _load_targets(
    targets: Mapping[str, str], root: Path, modules: dict[str, ModuleType]
) -> dict[str, Any]:
    """Import each module once, so the functions of one module share its state.

    (An ``on_log`` that tracks the best loss and an ``on_completed`` that reports it must
    see the same module, not two fresh imports of it; so must a metric and ``on_eval``.)
    """
    from arkor.manifest import load_callback, split_target

    callbacks: dict[str, Callback] = {}
    for event, target in targets.items():
        module_name, attribute = split_target(target)
        module = modules.get(module_name)
        if module is None:
            callbacks[event] = load_callback(target, root)
            modules[module_name] = sys.modules[module_name]
            continue
        value: Any = module
        for part in attribute.split("."):
            value = getattr(value, part)
        callbacks[event] = value
    return callbacks


def load_entry(path: Path) -> Trainer:
    """The trainer a path names: a manifest, a config (built first), or a module exporting one."""
    from arkor.manifest import build

    if path.suffix == ".json":
        return trainer_from_manifest(path)
    if path.suffix in _CONFIG_SUFFIXES:
        return trainer_from_manifest(build(path))
    if path.suffix == ".py":
        return _trainer_in_module(path)
    raise UsageError(
        f"Cannot run {path}: give a manifest (.json), a config (.toml, .yaml, .yml) or a Python "
        "module (.py) that exports `arkor` or `trainer`."
    )


def run_trainer(path: str | Path | None = None) -> TrainingResult:
    """Start the run and wait for it: ``path`` defaults to ``.arkor/build/manifest.json``.

    A Python module is searched for ``arkor`` (from :func:`create_arkor`), then
    ``trainer``, then ``default``, as the TypeScript SDK does.
    """
    trainer = load_entry(Path(path)) if path is not None else trainer_from_manifest()
    try:
        trainer.start()
        return trainer.wait()
    finally:
        trainer.close()


def _trainer_in_module(path: Path) -> Trainer:
    if not path.is_file():
        raise UsageError(f"No such module: {path}.")
    name = f"_arkor_entry_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"Cannot import {path} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent.resolve()))
    for attribute in ("arkor", "trainer", "default"):
        value: Any = getattr(module, attribute, None)
        if is_arkor(value):
            return value.trainer
        if isinstance(value, Trainer):
            return value
    raise UsageError(
        f"{path} exports no `arkor` (create_arkor(...)) or `trainer` (create_trainer(...))."
    )
