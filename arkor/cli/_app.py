"""The typer application: the root options and the command table."""

from __future__ import annotations

from typing import Annotated

import typer

from arkor.cli import build, init, schema, validate

app = typer.Typer(
    name="arkor",
    help=(
        "Describe, reproduce and run a LoRA fine-tune from a file.\n\n"
        "Start with `arkor init`, check with `arkor validate`, freeze with `arkor build`."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from arkor._version import __version__

        print(f"arkor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks on errors (also ARKOR_DEBUG=1)."),
    ] = False,
) -> None:
    """Arkor: describe, reproduce and run a LoRA fine-tune from a file."""


app.command("init")(init.init)
app.command("validate")(validate.validate)
app.command("build")(build.build)
app.command("schema")(schema.schema)
