"""``arkor deploy``: serve a trained adapter as an OpenAI-compatible endpoint."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import DeploymentDto, TrainingJob
    from arkor.sdk import Session


def deploy(
    job_id: Annotated[
        str | None,
        typer.Argument(
            help="The job whose adapter to serve. Default: the project's newest completed job.",
            show_default=False,
        ),
    ] = None,
    slug: Annotated[
        str | None,
        typer.Option(
            help="The endpoint's name in its URL (2-50 of a-z, 0-9, -). Default: from the job's name.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        int | None,
        typer.Option(
            min=0, help="Serve this checkpoint instead of the final adapter.", show_default=False
        ),
    ] = None,
    auth: Annotated[
        Literal["key", "none"],
        typer.Option(help="`key`: requests need an API key (one is made now); `none`: open."),
    ] = "key",
    json_output: JsonOption = False,
) -> int:
    """Serve a job's adapter at an OpenAI-compatible URL, with an API key.

    Prints the base URL, the key (shown this once) and ready `curl` and `openai` snippets.
    The plane that runs it serves it: with no `arkor serve` running, the endpoint is saved
    and served once one starts.

    Examples:

      arkor deploy

      arkor deploy job_3f2a --slug support-bot --checkpoint 40

      arkor deploy --auth none --json
    """
    from arkor.cli._output import print_json_line
    from arkor.cloud import (
        AdapterRef,
        AdapterTarget,
        ConflictError,
        CreateDeploymentInput,
        CreateDeploymentKeyInput,
    )
    from arkor.errors import UsageError
    from arkor.sdk import open_session

    session = open_session()
    try:
        job = _job(session, job_id)
        name = slug or _slug_for(job.name)
        ref = AdapterRef(
            kind="checkpoint" if checkpoint is not None else "final", job_id=job.id, step=checkpoint
        )
        body = CreateDeploymentInput(
            slug=_checked_slug(name),
            target=AdapterTarget(adapter=ref),
            auth_mode="fixed_api_key" if auth == "key" else "none",
        )
        try:
            deployment = session.client.create_deployment(session.scope, body)
        except ConflictError:
            raise UsageError(
                f"The endpoint name `{name}` is taken on this plane. Choose another with "
                "`--slug NAME`, or retarget the existing one with "
                f"`arkor endpoints update {name} --job {job.id}`."
            ) from None
        key = None
        if auth == "key":
            created = session.client.create_deployment_key(
                session.scope, deployment.id, CreateDeploymentKeyInput(label="arkor deploy")
            )
            key = created.key.plaintext
        embedded = session.kind == "embedded"
    finally:
        session.close()
    if json_output:
        print_json_line({"deployment": deployment.to_wire(), "key": key, "served": not embedded})
    else:
        show_deployment(deployment, key=key, embedded=embedded, what=_what(job.id, checkpoint))
    return 0


def _job(session: Session, job_id: str | None) -> TrainingJob:
    """The named job, or the project's newest completed one."""
    from arkor.errors import UsageError

    if job_id is not None:
        return session.client.get_job(session.scope, job_id, include_events=False).job
    newest = session.newest_completed_job()
    if newest is None:
        raise UsageError(
            "This project has no completed job to deploy yet. Train one with `arkor start`, "
            "or name a job: `arkor deploy JOB_ID`."
        )
    return newest


def _slug_for(name: str) -> str:
    """A slug from a job's name: lowercase, runs of other characters as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-") or "model"


def _checked_slug(slug: str) -> str:
    from arkor.cloud._deployments import check_slug
    from arkor.errors import UsageError

    try:
        return check_slug(slug)
    except ValueError as error:
        raise UsageError(f"`{slug}` cannot name an endpoint: {error}. Use --slug NAME.") from None


def _what(job_id: str, checkpoint: int | None) -> str:
    return f"checkpoint {checkpoint} of job {job_id}" if checkpoint is not None else f"job {job_id}"


def show_deployment(
    deployment: DeploymentDto, *, key: str | None, embedded: bool, what: str | None = None
) -> None:
    """The deployment's URLs, its key (once), and copy-paste snippets."""
    from arkor.cli._output import echo, style

    served = f" ({what})" if what else ""
    echo(f"{style('✓', 'green')} Endpoint `{deployment.slug}`{served}")
    echo(f"  url       {deployment.url}")
    if deployment.path_url != deployment.url:
        echo(f"  or        {deployment.path_url}   (for clients that cannot resolve *.localhost)")
    if key is not None:
        echo(f"  key       {key}")
        echo(
            style(
                "            shown this once: store it now (`arkor endpoints keys create` makes more)",
                "dim",
            )
        )
    elif deployment.auth_mode == "none":
        echo("  auth      none: anyone who can reach the plane can use it")
    if embedded:
        echo(
            style(
                "! No `arkor serve` is running: the endpoint is saved, and served once one runs "
                "on this machine (`arkor endpoints show` then prints its URL).",
                "yellow",
            )
        )
    auth_header = (
        f' -H "Authorization: Bearer {key or "$ARKOR_KEY"}"'
        if deployment.auth_mode != "none"
        else ""
    )
    echo("\ncurl:")
    echo(
        f"  curl {deployment.path_url}/chat/completions{auth_header} -H 'Content-Type: application/json' "
        '-d \'{"messages": [{"role": "user", "content": "Hello!"}]}\''
    )
    echo("\nPython (pip install openai):")
    echo("  from openai import OpenAI")
    echo(f'  client = OpenAI(base_url="{deployment.path_url}", api_key="{key or "unused"}")')
    echo(
        f'  answer = client.chat.completions.create(model="{deployment.slug}", '
        'messages=[{"role": "user", "content": "Hello!"}])'
    )
    echo("  print(answer.choices[0].message.content)")
