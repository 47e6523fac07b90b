"""``arkor validate``: check a config the way an editor does, every error at once."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from arkor.cli._options import ConfigOption, SetOption


def validate(
    config: ConfigOption = None,
    overrides: SetOption = None,
    output_format: Annotated[
        Literal["text", "json"],
        typer.Option("--format", help="Output format: text for people, json for tools."),
    ] = "text",
) -> int:
    """Check the config; report every error with file:line:col.

    The config is checked against the published schema, as an editor does.

    Exit 0 when valid, 2 when not.

    Examples:

      arkor validate

      arkor validate -c configs/large.toml --set trainer.max_steps=10 --format json
    """
    from arkor.cli._output import echo, print_json, style
    from arkor.config import ConfigError, load_config

    try:
        loaded = load_config(config, overrides or ())
    except ConfigError as error:
        if output_format != "json":
            raise
        issues = [issue.to_json() for issue in error.issues] or [
            {"file": None, "line": None, "column": None, "path": None, "message": error.message, "suggestion": None}
        ]
        print_json({"valid": False, "errors": issues})
        return error.exit_code
    trainer = loaded.config.trainer
    if output_format == "json":
        print_json({"valid": True, "config": str(loaded.path), "errors": []})
    else:
        echo(f"{style('✓', 'green')} {loaded.path.name} is valid: trainer `{trainer.name}` on {trainer.model}.")
    return 0
