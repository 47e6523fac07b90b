"""``arkor init``: start a project in the current folder from a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer


def init(
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            "-t",
            help="Starter: triage, translate, redaction or blank.",
            show_default="triage",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Project name (lowercase, dashes). Default: the folder's name.",
            show_default=False,
        ),
    ] = None,
    config_format: Annotated[
        Literal["toml", "yaml"], typer.Option("--format", help="Config file format.")
    ] = "toml",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Accept the defaults; never prompt.")
    ] = False,
    git: Annotated[
        bool | None,
        typer.Option(
            "--git/--skip-git",
            help="Run `git init` (default: ask on a terminal, yes with --yes).",
            show_default=False,
        ),
    ] = None,
    agents_md: Annotated[
        bool,
        typer.Option(
            "--agents-md/--no-agents-md", help="Write or update the Arkor block of AGENTS.md."
        ),
    ] = True,
) -> int:
    """Start a project here from a template; never overwrites a file.

    Writes arkor.toml (or arkor.yaml), a callbacks package and sample data.

    Prompts only on a terminal outside CI. Each path is reported as created, kept or patched.

    Examples:

      arkor init

      arkor init --template translate --name fr-bot --format yaml -y
    """
    from arkor.cli._output import echo, interactive, style
    from arkor.scaffold import (
        DEFAULT_TEMPLATE,
        check_project_name,
        get_template,
        git_init,
        list_templates,
        project_name_from,
        scaffold,
    )

    folder = Path.cwd()
    ask = interactive() and not yes
    if template is None and ask:
        choices = {t.id: t.description for t in list_templates()}
        for template_id, description in choices.items():
            echo(f"  {template_id:<10} {description}")
        template = typer.prompt("Template", default=DEFAULT_TEMPLATE)
    chosen = get_template(template or DEFAULT_TEMPLATE)
    if name is None:
        name = project_name_from(folder)
        if ask:
            name = typer.prompt("Project name", default=name)
    check_project_name(name)
    results = scaffold(
        folder, template=chosen, name=name, config_format=config_format, agents_md=agents_md
    )
    if git is None:
        git = yes or (ask and typer.confirm("Initialise a git repository?", default=True))
    if git:
        results.append(git_init(folder))
    colors = {"created": "green", "patched": "yellow", "kept": "dim"}
    for result in results:
        shown = (
            result.path.relative_to(folder) if result.path.is_relative_to(folder) else result.path
        )
        note = f" ({result.note})" if result.note else ""
        echo(f"  {style(f'{result.status:<8}', colors[result.status])} {shown}{note}")
    echo(f"\n{style('✓', 'green')} Project `{name}` ready from the `{chosen.id}` template. Next:")
    echo("  arkor validate   check the config")
    echo("  arkor build      freeze it into .arkor/build/manifest.json")
    return 0
