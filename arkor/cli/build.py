"""``arkor build``: freeze the config into ``.arkor/build/manifest.json``, a lockfile."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import ConfigOption, JsonOption, SetOption

if TYPE_CHECKING:
    from arkor.cloud import JobConfig
    from arkor.manifest import BuildResult, Manifest


def build(
    config: ConfigOption = None,
    overrides: SetOption = None,
    upgrade: Annotated[
        bool,
        typer.Option("--upgrade", help="Resolve the model and data pins again, moving them."),
    ] = False,
    upgrade_model: Annotated[
        bool,
        typer.Option("--upgrade-model", help="Resolve the model pin again (a new Hub commit)."),
    ] = False,
    upgrade_data: Annotated[
        bool,
        typer.Option("--upgrade-data", help="Resolve the data pin again (a Hub dataset, a URL)."),
    ] = False,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked",
            help="Write nothing; fail when the manifest would change or a pin is unresolved (CI).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> int:
    """Freeze the config into .arkor/build/manifest.json (a lockfile).

    Validates, imports the callbacks, checks the data, fills defaults, and pins what decides
    the result: the model (its Hub commit, or the sha256 of local weights), the data and the
    training stack. Then writes atomically.

    A Hub commit or a URL's digest stays pinned while the config names the same model and
    data; --upgrade moves them. A failed build leaves the previous manifest untouched.

    Examples:

      arkor build

      arkor build --upgrade-model

      arkor build --locked
    """
    from arkor.cli._output import print_json
    from arkor.manifest import build_project

    targets = {"model", "data"} if upgrade else set()
    targets |= {"model"} if upgrade_model else set()
    targets |= {"data"} if upgrade_data else set()
    result = build_project(config, overrides or (), upgrade=targets, locked=locked)
    if json_output:
        print_json(
            {
                "manifest": str(result.path),
                "digest": result.manifest.digest,
                "changed": result.changed,
                "moved": [
                    {"pin": move.path, "old": move.old, "new": move.new} for move in result.moves
                ],
                "unresolved": result.manifest.unresolved,
            }
        )
    else:
        _summary(result, locked=locked, upgrading=bool(targets))
    return 0


def _summary(result: BuildResult, *, locked: bool, upgrading: bool) -> None:
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
    verb = "Locked:" if locked else "Built" if result.changed else "Up to date:"
    echo(f"{style('✓', 'green')} {verb} {path}  {style(manifest.digest[:19], 'dim')}")
    for label, value in (
        ("trainer", manifest.job.name),
        ("model", f"{config.model}{_model_pin(config)}"),
        ("dataset", f"{data}{_data_pin(config)}"),
        ("stack", _stack(config)),
        ("steps", steps),
        ("callbacks", callbacks),
        ("eval", _eval(manifest)),
    ):
        if value:
            echo(f"  {label:<10}{value}")
    for move in result.moves:
        echo(f"  {style('moved', 'yellow'):<10}{move.describe()}")
    if upgrading and not result.moves:
        echo("  Nothing moved: every pin is already the newest.")
    if manifest.unresolved:
        reasons = "; ".join(manifest.unresolved)
        echo(
            style(
                f"! Not pinned: {reasons}. The run resolves these and records what it used; build "
                "again where they can be reached to pin them.",
                "yellow",
            )
        )


def _eval(manifest: Manifest) -> str | None:
    """The metrics, and which rows they are measured on: listed by hash when build chose them."""
    spec = manifest.job.config.eval
    if spec is None:
        return None
    metrics = ", ".join(spec.metrics)
    held = manifest.eval.held_out if manifest.eval is not None else None
    if held is not None:
        count = len(held.row_sha256)
        used = f"the {count}" if spec.rows >= count else f"{spec.rows} of the {count}"
        of = (
            f"of {spec.source.path}"
            if spec.source is not None
            else f"held out of {held.total_rows}, listed by hash in the manifest"
        )
        return f"{metrics} on {used} rows {of}"
    if isinstance(spec.held_out, str):
        return f'{metrics} on up to {spec.rows} rows of the "{spec.held_out}" split'
    if spec.source is not None:
        return f"{metrics} on up to {spec.rows} rows of {spec.source.path}"
    return f"{metrics} on up to {spec.rows} of a {spec.held_out} fraction of the rows"


def _model_pin(config: JobConfig) -> str:
    pin = config.model_pin
    if pin is None:
        return "  (not pinned)"
    if pin.revision is not None:
        return f" @ {pin.revision[:12]} (Hub commit)"
    return f"  sha256 {(pin.sha256 or '')[:12]} ({pin.kind})"


def _data_pin(config: JobConfig) -> str:
    source = config.dataset_source
    for key, label in (
        ("revision", "Hub commit"),
        ("sha256", "sha256"),
        ("etag", "ETag"),
        ("last_modified", "Last-Modified"),
    ):
        value = getattr(source, key, None)
        if value:
            shown = value[:12] if key in ("revision", "sha256") else value
            return f" @ {shown} ({label})" if key == "revision" else f"  {label} {shown}"
    return "  (not pinned)"


def _stack(config: JobConfig) -> str:
    stack = config.build_stack
    if not stack:
        return "(not recorded: no engine extra here)"
    return ", ".join(f"{name} {version}" for name, version in stack.items())
