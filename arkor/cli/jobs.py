"""``arkor jobs``: list, show, cancel and follow the project's jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import JobEvent
    from arkor.sdk import Session

app = typer.Typer(
    help="List, show, cancel and follow this project's jobs.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JobIdArgument = Annotated[
    str, typer.Argument(help="The job's id (from `arkor jobs list`).", show_default=False)
]


def _session() -> Session:
    from arkor.sdk import open_session

    return open_session()


@app.command("list")
def list_jobs(json_output: JsonOption = False) -> int:
    """The project's jobs, newest first."""
    from arkor.cli._output import echo, print_json

    session = _session()
    try:
        jobs = session.client.list_jobs(session.scope)
    finally:
        session.close()
    if json_output:
        print_json({"jobs": [job.to_wire() for job in jobs]})
        return 0
    if not jobs:
        echo("No jobs yet. Start one with `arkor start`.")
        return 0
    echo(f"{'id':<28}{'status':<11}{'created':<22}name")
    for job in jobs:
        echo(f"{job.id:<28}{job.status:<11}{job.created_at[:19]:<22}{job.name}")
    return 0


@app.command("show")
def show(job_id: JobIdArgument, json_output: JsonOption = False) -> int:
    """One job: its status, settings, timestamps, error, and what it trained with.

    "trained with" is what the worker reported when training began: the model's commit or
    digest, the data's, and the torch / transformers / peft / accelerate / datasets versions.
    """
    from arkor.cli._output import echo, print_json

    session = _session()
    try:
        envelope = session.client.get_job(session.scope, job_id)
    finally:
        session.close()
    job = envelope.job
    trained_with = _trained_with(envelope.events or [])
    if json_output:
        print_json({"job": job.to_wire(), "trainedWith": trained_with})
        return 0
    echo(f"{job.id}  {job.name}")
    echo(f"  status     {job.status}")
    echo(f"  model      {job.config.model}")
    for label, value in (
        ("created", job.created_at),
        ("started", job.started_at),
        ("completed", job.completed_at),
    ):
        if value:
            echo(f"  {label:<11}{value}")
    if job.error:
        echo(f"  error      {job.error}")
    if trained_with is not None:
        _show_trained_with(trained_with)
    return 0


def _trained_with(events: list[JobEvent]) -> dict[str, Any] | None:
    """The pins and stack the newest ``training.started`` event reported, if training began."""
    started = [event for event in events if event.type == "training.started"]
    if not started:
        return None
    metadata = started[-1].metadata or {}
    return {
        key: metadata.get(key) for key in ("modelPin", "dataPin", "stack", "warnings", "device")
    }


def _show_trained_with(trained_with: dict[str, Any]) -> None:
    from arkor.cli._output import echo, style

    echo("  trained with")
    model_pin = trained_with.get("modelPin") or {}
    if model_pin.get("revision"):
        echo(f"    model    Hub commit {model_pin['revision']}")
    elif model_pin.get("sha256"):
        echo(f"    model    {model_pin.get('kind')} sha256 {model_pin['sha256']}")
    else:
        echo("    model    (no commit or digest was known)")
    data_pin = trained_with.get("dataPin") or {}
    for key in ("revision", "sha256", "etag"):
        if data_pin.get(key):
            echo(f"    data     {'Hub commit' if key == 'revision' else key} {data_pin[key]}")
            break
    stack = trained_with.get("stack") or {}
    if stack:
        echo(f"    stack    {', '.join(f'{name} {version}' for name, version in stack.items())}")
    if trained_with.get("device"):
        echo(f"    device   {trained_with['device']}")
    for warning in trained_with.get("warnings") or ():
        echo(style(f"  warning: {warning}", "yellow"))


@app.command("cancel")
def cancel(job_id: JobIdArgument) -> int:
    """Ask the plane to stop a job; it ends `cancelled` within a training step."""
    from arkor.cli._output import echo

    session = _session()
    try:
        session.client.cancel_job(session.scope, job_id)
    finally:
        session.close()
    echo(f"Cancellation of job {job_id} requested.")
    return 0


@app.command("logs")
def logs(
    job_id: JobIdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the job ends.")
    ] = False,
    json_output: JsonOption = False,
) -> int:
    """Replay a job's events; with --follow, keep streaming them until it ends."""
    from arkor.cli._progress import RunDisplay
    from arkor.cloud import follow_events

    display = RunDisplay(json_lines=json_output)
    session = _session()
    try:
        if follow:
            session.client.get_job(
                session.scope, job_id, include_events=False
            )  # an unknown id fails here
            for event in follow_events(session.client, session.scope, job_id):
                display.event(event)
        else:
            for event in session.client.get_job(session.scope, job_id).events or []:
                display.event(event)
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()
    return 0
