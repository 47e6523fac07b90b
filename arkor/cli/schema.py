"""``arkor schema``: print, check or rewrite the published JSON Schema."""

from __future__ import annotations

from typing import Annotated

import typer


def schema(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Fail (exit 1) when the shipped schema differs from the models."
        ),
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", help="Rewrite the shipped schema from the models.")
    ] = False,
    path: Annotated[
        bool,
        typer.Option(
            "--path", help="Print where the shipped schema file is (for `#:schema` offline)."
        ),
    ] = False,
) -> int:
    """Print, check or rewrite the JSON Schema of the config.

    The schema is generated from the config models.

    Editors use it for completion, hover docs and checking.

    Examples:

      arkor schema > arkor.schema.json

      arkor schema --check
    """
    import difflib

    from arkor.cli._output import echo, error_text
    from arkor.config import render_schema, shipped_schema_path

    target = shipped_schema_path()
    if path:
        echo(str(target))
        return 0
    generated = render_schema()
    if write:
        from arkor._fs import atomic_write_text

        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != generated:
            atomic_write_text(target, generated)
            echo(f"Wrote {target}")
        else:
            echo(f"{target} is up to date")
        return 0
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current == generated:
            echo(f"{target} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "shipped",
            "generated",
            n=1,
        )
        typer.echo("".join(list(diff)[:60]), err=True)
        typer.echo(
            error_text(
                f"{target} is stale: the config models changed. Run `arkor schema --write` and commit it."
            ),
            err=True,
        )
        return 1
    typer.echo(generated, nl=False)
    return 0
