"""``arkor models``: the local model store, for machines that cannot reach the Hub."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.engine._store import StoredModel

app = typer.Typer(
    help=(
        "Keep models on this machine: import a model folder or a .gguf file under a Hub-style "
        "id, then use that id as `model` in a config, offline."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("import")
def import_model(
    path: Annotated[
        Path,
        typer.Argument(
            help="A transformers model folder (config.json plus weights) or a .gguf file.",
            show_default=False,
            metavar="PATH",
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            "-n",
            help="The id to store it under, e.g. HuggingFaceTB/SmolLM2-135M-Instruct; configs name it as `model`.",
            show_default=False,
            metavar="ID",
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace a stored model with the same id.")
    ] = False,
    json_output: JsonOption = False,
) -> int:
    """Copy a model folder, or convert a .gguf file once, into the model store.

    A .gguf file becomes a normal transformers folder; converting it loads the whole model,
    which takes a while, and is never repeated.

    Examples:

      arkor models import ./SmolLM2-135M-Instruct.Q4_1.gguf --name HuggingFaceTB/SmolLM2-135M-Instruct

      arkor models import ~/weights/my-llama --name me/my-llama --force
    """
    from arkor.cli._output import echo, human_size, print_json, style
    from arkor.engine import require_local
    from arkor.engine._store import ModelStore, is_gguf

    if is_gguf(path):
        require_local()
    started = time.monotonic()
    stored = ModelStore().import_model(path, name, replace=force, progress=_progress)
    if json_output:
        print_json(stored.to_json())
        return 0
    seconds = time.monotonic() - started
    echo(
        f"{style('✓', 'green')} Imported {stored.name} ({human_size(stored.size)}) in {seconds:.1f} s"
    )
    echo(f"  stored at  {stored.path}")
    echo(f'  use it as  model = "{stored.name}"')
    return 0


@app.command("list")
def list_models(json_output: JsonOption = False) -> int:
    """List the stored models: id, size and where each was imported from."""
    from arkor.cli._output import echo, human_size, print_json, style
    from arkor.engine._store import ModelStore

    store = ModelStore()
    models = store.list()
    if json_output:
        print_json({"store": str(store.root), "models": [model.to_json() for model in models]})
        return 0
    if not models:
        echo(
            f"No models in the store ({store.root}). Add one with "
            "`arkor models import PATH --name ID`."
        )
        return 0
    echo(style(_table_row("ID", "SIZE", "SOURCE", _width(models)), "bold"))
    for model in models:
        echo(_table_row(model.name, human_size(model.size), model.source, _width(models)))
    return 0


@app.command("remove")
def remove_model(
    name: Annotated[
        str, typer.Argument(help="The id of the stored model.", show_default=False, metavar="ID")
    ],
) -> int:
    """Delete a model from the store (the source it was imported from is untouched)."""
    from arkor.cli._output import echo, human_size, style
    from arkor.engine._store import ModelStore

    removed = ModelStore().remove(name)
    echo(f"{style('✓', 'green')} Removed {removed.name} ({human_size(removed.size)} freed)")
    return 0


def _progress(line: str) -> None:
    typer.echo(line, err=True)


def _width(models: list[StoredModel]) -> int:
    return max(len("ID"), *(len(model.name) for model in models))


def _table_row(name: str, size: str, source: str, width: int) -> str:
    return f"{name:<{width}}  {size:>9}  {source}"
