"""``arkor build``: freeze the config into ``.arkor/build/manifest.json``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from arkor.cli._options import ConfigOption, JsonOption, SetOption

if TYPE_CHECKING:
    from arkor.manifest import BuildResult


def build(
    config: ConfigOption = None, overrides: SetOption = None, json_output: JsonOption = False
) -> int:
    """Freeze the config into .arkor/build/manifest.json (a lockfile).

    Validates, imports the callbacks, checks the data, fills defaults, then writes atomically.

    A failed build leaves the previous manifest untouched.

    Examples:

      arkor build

      arkor build --set trainer.max_steps=10 --set trainer.dry_run=true
    """
    from arkor.cli._output import print_json
    from arkor.manifest import build_project

    result = build_project(config, overrides or ())
    if json_output:
        print_json(
            {
                "manifest": str(result.path),
                "digest": result.manifest.digest,
                "changed": result.changed,
            }
        )
    else:
        _summary(result)
    return 0


def _summary(result: BuildResult) -> None:
    from arkor.cli._output import echo, style

    manifest = result.manifest
    config = manifest.job.config
    dataset = manifest.dataset
    if dataset.type == "file":
        fmt = config.dataset_format
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        rows = f"{dataset.rows} rows, " if dataset.rows is not None else ""
        data = f"{dataset.path} ({rows}{kind})"
    else:
        data = f"{dataset.type} {dataset.name or dataset.url}"
    if config.max_steps is not None:
        steps = f"{config.max_steps} max steps"
    else:
        steps = f"{config.num_train_epochs:g} epoch(s)"
    if config.dry_run:
        steps += " (dry run)"
    callbacks = ", ".join(manifest.callbacks) or "none"
    relative = os.path.relpath(result.path)
    path = result.path if relative.startswith("..") else relative
    verb = "Built" if result.changed else "Up to date:"
    echo(f"{style('✓', 'green')} {verb} {path}  {style(manifest.digest[:19], 'dim')}")
    for label, value in (
        ("trainer", manifest.job.name),
        ("model", config.model),
        ("dataset", data),
        ("steps", steps),
        ("callbacks", callbacks),
    ):
        echo(f"  {label:<10}{value}")
