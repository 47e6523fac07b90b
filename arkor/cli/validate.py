"""``arkor validate``: check configs the way an editor does, every error at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from arkor.cli._options import ConfigOption, SetOption


def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Config files to check (as pre-commit passes them); pyproject.toml files without [tool.arkor] are skipped.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    output_format: Annotated[
        Literal["text", "json"],
        typer.Option("--format", help="Output format: text for people, json for tools."),
    ] = "text",
) -> int:
    """Check the config; report every error with file:line:col.

    The config is checked against the published schema, as an editor does, then what it
    points at: the dataset file exists and the callback modules can be found (none of
    your code is run; `arkor build` imports it). Exit 0 when valid, 2 when not.

    Examples:

      arkor validate

      arkor validate -c configs/large.toml --set trainer.max_steps=10 --format json
    """
    from arkor.cli._output import echo, error_text, print_json, style
    from arkor.config import ConfigError, has_arkor_table
    from arkor.manifest import validate_project

    if files and config is not None:
        from arkor.errors import UsageError

        raise UsageError("Give config files as arguments or with -c, not both.")
    targets: list[Path | None] = [config]
    if files:
        targets = [path for path in files if path.name != "pyproject.toml" or has_arkor_table(path)]
    errors: list[dict[str, Any]] = []
    checked: list[str] = []
    failure: ConfigError | None = None
    for target in targets:
        try:
            loaded = validate_project(target, overrides or ())
        except ConfigError as error:
            if output_format != "json" and len(targets) == 1:
                raise
            failure = error
            errors.extend(error.issues_json())
            if output_format != "json":
                typer.echo(error_text(str(error)), err=True)
            continue
        checked.append(str(loaded.path))
        if output_format != "json":
            trainer = loaded.config.trainer
            echo(
                f"{style('✓', 'green')} {loaded.path.name} is valid: trainer `{trainer.name}` on {trainer.model}."
            )
    if output_format == "json":
        print_json({"valid": failure is None, "checked": checked, "errors": errors})
    return failure.exit_code if failure is not None else 0
