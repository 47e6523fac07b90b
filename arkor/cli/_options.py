"""Options shared by several commands, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file to use (arkor.toml, arkor.yaml or pyproject.toml). Default: found in the current folder.",
        show_default=False,
        dir_okay=False,
    ),
]

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config value, e.g. --set trainer.max_steps=10 (the value is a TOML literal). Repeatable.",
        show_default=False,
        metavar="KEY=VALUE",
    ),
]

JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print machine-readable JSON instead of text."),
]
