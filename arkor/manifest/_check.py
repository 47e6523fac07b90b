"""Check what a config points at without running any of the user's code.

``arkor validate`` runs these after the schema check: the dataset file (and the eval file)
is there and has a type Arkor reads, ``trainer.eval`` asks for held-out rows the data can
give, and every callback and custom metric module can be found on the project path. Finding a
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
    ConfigError,
    ConfigIssue,
    FileDataset,
    HuggingfaceDataset,
    KeyPath,
    LoadedConfig,
    Trainer,
    load_config,
)
from arkor.manifest._callbacks import callback_targets, metric_targets, split_target

DEFAULT_HELD_OUT = 0.1
"""The fraction of rows an eval block holds out when nothing else says (as the worker does)."""


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
    """Raise one :class:`ConfigError` for a missing dataset file, eval file or code module."""
    issues = [
        issue
        for issue in (dataset_file_issue(loaded), *eval_issues(loaded), *_module_issues(loaded))
        if issue is not None
    ]
    if issues:
        raise ConfigError(issues)


def dataset_file(loaded: LoadedConfig, dataset: FileDataset) -> Path:
    """The local dataset file, resolved against the config file that names it."""
    return _config_relative(loaded, ("trainer", "dataset", "path"), dataset.path)


def eval_file(loaded: LoadedConfig, path: str) -> Path:
    """``trainer.eval.path``, resolved against the config file that names it."""
    return _config_relative(loaded, ("trainer", "eval", "path"), path)


def _config_relative(loaded: LoadedConfig, key: KeyPath, path: str) -> Path:
    origin = loaded.raw.origin(key)
    base = origin.file.parent if origin.file is not None else loaded.root
    return (base / path).resolve()


def dataset_file_issue(loaded: LoadedConfig) -> ConfigIssue | None:
    """Why the local dataset file cannot be read, located at ``trainer.dataset.path``."""
    dataset = loaded.config.trainer.dataset
    if not isinstance(dataset, FileDataset):
        return None
    return _file_issue(loaded, dataset_file(loaded, dataset), ("trainer", "dataset", "path"))


def _file_issue(loaded: LoadedConfig, file: Path, key: KeyPath) -> ConfigIssue | None:
    what = "eval file" if key[1] == "eval" else "dataset file"
    if not file.exists():
        problem = (
            f"the {what} {file} does not exist (paths are relative to the config file "
            "that names them)."
        )
    elif not file.is_file():
        problem = f"the {what} path {file} is not a regular file."
    elif file.suffix.lower() not in FILE_SUFFIXES:
        problem = (
            f"unsupported {what} type `{file.suffix or '(none)'}`: use .jsonl, .json, "
            ".csv or .parquet."
        )
    else:
        return None
    return ConfigIssue(problem, loaded.raw.locate(key), key)


def held_out_setting(trainer: Trainer) -> float | str | None:
    """What the evaluation holds out of training: ``eval.held_out``, else ``dataset_split``,
    else (without an eval file) :data:`DEFAULT_HELD_OUT`; None with an eval file or no eval."""
    evaluation = trainer.eval
    if evaluation is None or evaluation.path is not None:
        return None
    if evaluation.held_out is not None:
        return evaluation.held_out
    if trainer.dataset_split is not None:
        return trainer.dataset_split
    return DEFAULT_HELD_OUT


def held_out_key(trainer: Trainer) -> KeyPath:
    """The key that decides the held-out rows, for an error about them."""
    evaluation = trainer.eval
    if evaluation is not None and evaluation.held_out is not None:
        return ("trainer", "eval", "held_out")
    if trainer.dataset_split is not None:
        return ("trainer", "dataset_split")
    return ("trainer", "eval")


def eval_issues(loaded: LoadedConfig) -> list[ConfigIssue]:
    """What is wrong with ``trainer.eval`` before any row is read or any user code runs.

    Held-out rows and an eval file together, an ``eval.held_out`` that disagrees with
    ``dataset_split`` (one set of held-out rows serves the eval loss and the evaluation),
    a split name for data that has no splits, an eval file that is not there, and text
    rows, which have no answers to compare with.
    """
    trainer = loaded.config.trainer
    evaluation = trainer.eval
    if evaluation is None:
        return []
    raw = loaded.raw
    issues: list[ConfigIssue] = []

    def add(problem: str, key: KeyPath) -> None:
        issues.append(ConfigIssue(problem, raw.locate(key), key))

    held_key: KeyPath = ("trainer", "eval", "held_out")
    if evaluation.held_out is not None and evaluation.path is not None:
        add(
            "held_out and path are both set: evaluate on rows held out of the training data, "
            "or on the file in path, not both. Remove one of them.",
            held_key,
        )
    elif (
        evaluation.held_out is not None
        and trainer.dataset_split is not None
        and evaluation.held_out != trainer.dataset_split
    ):
        add(
            f"held_out = {evaluation.held_out!r} differs from trainer.dataset_split = "
            f"{trainer.dataset_split!r}: one set of held-out rows serves both the eval loss and "
            "the evaluation. Set only one of them, or both alike.",
            held_key,
        )
    setting = held_out_setting(trainer)
    if isinstance(setting, str) and not isinstance(trainer.dataset, HuggingfaceDataset):
        add(
            f'the evaluation asks for the split "{setting}", but only HuggingFace datasets have '
            f"named splits and this dataset is a {trainer.dataset.type} source. Hold out a "
            "fraction of its rows instead (e.g. 0.1), or give the rows in trainer.eval.path.",
            held_out_key(trainer),
        )
    if evaluation.path is not None:
        file_key: KeyPath = ("trainer", "eval", "path")
        problem = _file_issue(loaded, eval_file(loaded, evaluation.path), file_key)
        if problem is not None:
            issues.append(problem)
    fmt = trainer.dataset_format
    if (fmt if isinstance(fmt, str) else fmt.type) == "text":
        add(text_rows_problem(), ("trainer", "dataset_format"))
    return issues


def text_rows_problem() -> str:
    return (
        "the rows are plain text, which has no answer to compare with, so trainer.eval cannot "
        "evaluate them: evaluation asks each row's prompt and compares the answer with the "
        "row's own. Use chat or prompt/completion rows, or remove [trainer.eval]."
    )


def _module_issues(loaded: LoadedConfig) -> list[ConfigIssue]:
    """Each callback or custom metric module that cannot be found (once per module)."""
    trainer = loaded.config.trainer
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for entry in (*callback_targets(trainer.callbacks), *metric_targets(trainer.eval)):
        module = split_target(entry.target)[0]
        if module in seen:
            continue
        seen.add(module)
        problem = find_module_problem(module, loaded.root)
        if problem is not None:
            issues.append(ConfigIssue(problem, loaded.raw.locate(entry.key), entry.key))
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
                f"`{parts[depth]}`. Check the module path."
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
