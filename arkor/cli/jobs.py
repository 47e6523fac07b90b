"""``arkor jobs``: list, show, cancel, follow and download the project's jobs.

The download helpers here (:func:`find_job`, :func:`pick_artifacts`, :func:`fetch`) are
shared with ``arkor export``: both take a job's files from whichever plane ran it, over
HTTP, each checked against the sha256 the plane sends.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arkor.cli._options import JsonOption
from arkor.cli._output import human_size

if TYPE_CHECKING:
    from arkor.cloud import (
        Artifact,
        EvalCompleted,
        JobEnvelope,
        JobEvent,
        JobPlacement,
        TrainingJob,
    )
    from arkor.sdk import Session

app = typer.Typer(
    help="List, show, cancel, follow and download this project's jobs.",
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
    """One job: its status, settings, timestamps, error, what it trained with, and what it made.

    "trained with" is what the worker reported when training began: the model's commit or
    digest, the data's, and the torch / transformers / peft / accelerate / datasets versions.
    Then the final metrics, the checkpoints (by step), every artifact with its size, and
    the newest eval of the adapter against its base (--json: every eval, rows included).
    """
    from arkor.cli._output import echo, print_json

    session = _session()
    try:
        envelope = session.client.get_job(session.scope, job_id)
        artifacts = session.client.list_artifacts(session.scope, job_id)
    finally:
        session.close()
    job = envelope.job
    trained_with = _trained_with(envelope.events or [])
    metrics = final_metrics(envelope.events or [])
    checkpoints = checkpoint_steps(artifacts)
    evals = job_evals(job, envelope.events or [])
    if json_output:
        print_json(
            {
                "job": job.to_wire(),
                "trainedWith": trained_with,
                "metrics": metrics,
                "checkpoints": checkpoints,
                "artifacts": [{"path": item.path, "size": item.size} for item in artifacts],
                "evals": [event.to_wire() for event in evals],
            }
        )
        return 0
    echo(f"{job.id}  {job.name}")
    echo(f"  status     {job.status}")
    if job.queue_reason:
        echo(f"  waiting    {job.queue_reason}")
    if job.placement is not None:
        echo(f"  runs on    {placement_text(job.placement)}")
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
    _show_results(metrics, checkpoints, artifacts)
    shown = [event for event in evals if event.final or event.requested]
    if shown:
        from arkor.cli._output import eval_table_lines

        for line in eval_table_lines(shown[-1]):
            echo(f"  {line}")
    return 0


def placement_text(placement: JobPlacement) -> str:
    """Where a job's worker runs, in one line: ``ray job arkor-… on 10.0.0.5 (Ray node …)``."""
    if placement.executor == "ray":
        text = f"ray job {placement.executor_job_id or '(being submitted)'}"
    else:
        text = "local worker" + (
            f" process {placement.executor_job_id}" if placement.executor_job_id else ""
        )
    return f"{text} on {placement.node}" if placement.node else text


def job_evals(job: TrainingJob, events: list[JobEvent]) -> list[EvalCompleted]:
    """The job's ``eval.completed`` events in order, with the custom metrics its config names
    added when this folder's build manifest provides them (a metric that raises is left out,
    with a warning: the job is still shown)."""
    evals = [event for event in events if event.type == "eval.completed"]
    if not evals:
        return []
    from arkor.cli._output import warn
    from arkor.cli.eval import custom_metrics, scored
    from arkor.sdk import MetricError

    custom = custom_metrics(job, quiet=True)
    try:
        return [scored(event, custom) for event in evals]
    except MetricError as error:
        warn(f"{error} The evals are shown without the custom metrics.")
        return evals


def final_metrics(events: list[JobEvent]) -> dict[str, Any] | None:
    """The metrics of the newest ``training.completed`` event; None before a job completes."""
    completed = [event for event in events if event.type == "training.completed"]
    return dict(completed[-1].metrics or {}) if completed else None


_CHECKPOINT = re.compile(r"^checkpoints/checkpoint-(\d+)/")


def checkpoint_steps(artifacts: list[Artifact]) -> list[int]:
    """The steps of the checkpoints among a job's artifacts, in order."""
    return sorted(
        {int(found.group(1)) for item in artifacts if (found := _CHECKPOINT.match(item.path))}
    )


def _show_results(
    metrics: dict[str, Any] | None, checkpoints: list[int], artifacts: list[Artifact]
) -> None:
    from arkor.cli._output import echo

    if metrics:
        shown = ", ".join(f"{key} {_number(value)}" for key, value in metrics.items())
        echo(f"  metrics    {shown}")
    if checkpoints:
        echo(f"  checkpoints at steps {', '.join(str(step) for step in checkpoints)}")
    if artifacts:
        total = sum(item.size for item in artifacts)
        echo(f"  artifacts  {len(artifacts)} files, {human_size(total)}")
        width = max(len(item.path) for item in artifacts)
        for item in artifacts:
            echo(f"    {item.path:<{width}}  {human_size(item.size)}")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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


CheckpointOption = Annotated[
    int | None,
    typer.Option(
        "--checkpoint",
        help="A checkpoint's step (see `arkor jobs show`) instead of the final adapter.",
        show_default=False,
        metavar="STEP",
        min=0,
    ),
]

ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Replace the output folder if it has files in it.")
]


@app.command("download")
def download(
    job_id: JobIdArgument,
    checkpoint: CheckpointOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The folder to create. Default: ./JOB_ID-adapter (or ./JOB_ID-checkpoint-STEP).",
            show_default=False,
            metavar="DIR",
            file_okay=False,
        ),
    ] = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
) -> int:
    """Download a job's final adapter (or one checkpoint) from the plane that ran it.

    Every file is streamed, checked against the sha256 the plane sends, and the folder
    appears whole or not at all.

    Examples:

      arkor jobs download job_0123 --out ./support-bot-adapter

      arkor jobs download job_0123 --checkpoint 300 --json
    """
    from arkor.cli._output import echo, print_json_line
    from arkor.engine._export import atomic_folder, check_target

    target = out or Path(
        f"{job_id}-adapter" if checkpoint is None else f"{job_id}-checkpoint-{checkpoint}"
    )
    check_target(target, force=force)
    session = _session()
    try:
        envelope = find_job(session, job_id)
        chosen = pick_artifacts(
            envelope, session.client.list_artifacts(session.scope, job_id), checkpoint
        )
        with atomic_folder(target, force=force) as staging:
            files = fetch(
                session, job_id, chosen, staging, checkpoint=checkpoint, live=not json_output
            )
    finally:
        session.close()
    folder = target.resolve()
    if json_output:
        print_json_line(
            {
                "job": job_id,
                "source": source_folder(checkpoint),
                "out": str(folder),
                "bytes": sum(item.size for item in files),
                "files": [item.to_wire() for item in files],
            }
        )
        return 0
    what = "final adapter" if checkpoint is None else f"checkpoint at step {checkpoint}"
    echo(f"Downloaded job {job_id}'s {what} to {folder}:")
    for item in files:
        echo(f"  {item.path:<28} {human_size(item.size):>9}  sha256 {item.sha256}")
    return 0


def source_folder(checkpoint: int | None) -> str:
    """Where a job keeps its final adapter, or the checkpoint at step ``checkpoint``."""
    return "adapter" if checkpoint is None else f"checkpoints/checkpoint-{checkpoint}"


def find_job(session: Session, job_id: str, *, events: bool = True) -> JobEnvelope:
    """The job (with its events unless ``events`` is False); an id the project doesn't have
    is a usage error."""
    from arkor.cloud import NotFoundError
    from arkor.errors import UsageError

    try:
        return session.client.get_job(session.scope, job_id, include_events=events)
    except NotFoundError:
        raise UsageError(
            f"The project `{session.scope.project_slug}` has no job `{job_id}` on the "
            f"{session.describe()}. `arkor jobs list` shows its jobs; run the command in the "
            "project's folder, against the plane that ran the job."
        ) from None


def pick_artifacts(
    envelope: JobEnvelope, artifacts: list[Artifact], checkpoint: int | None
) -> list[Artifact]:
    """The files of the job's final adapter, or of its checkpoint at step ``checkpoint``.

    Raises when there is none: a job has a final adapter once it completes, and only
    the checkpoints it saved.
    """
    from arkor.errors import ArkorError, UsageError

    job = envelope.job
    prefix = source_folder(checkpoint) + "/"
    chosen = [item for item in artifacts if item.path.startswith(prefix)]
    steps = checkpoint_steps(artifacts)
    saved = (
        f"its checkpoints are at steps {', '.join(str(step) for step in steps)}"
        if steps
        else "it saved no checkpoint"
    )
    if checkpoint is not None and not chosen:
        raise UsageError(
            f"Job {job.id} has no checkpoint at step {checkpoint}: {saved}. Give one of "
            "those steps to --checkpoint, or leave it out for the final adapter."
        )
    if checkpoint is None and not any(
        item.path == f"{prefix}adapter_config.json" for item in chosen
    ):
        pick = "pass --checkpoint STEP for one of them" if steps else "start a new run"
        raise ArkorError(
            f"Job {job.id} is {job.status} and has no completed adapter (a job writes its "
            f"final adapter when training completes); {saved}. Wait for the job to complete "
            f"(`arkor jobs logs {job.id} --follow`), or {pick}."
        )
    return chosen


def fetch(
    session: Session,
    job_id: str,
    chosen: list[Artifact],
    into: Path,
    *,
    checkpoint: int | None,
    live: bool,
) -> list[Artifact]:
    """Download ``chosen`` into ``into`` (paths relative to the adapter's or the checkpoint's
    folder), checking each one.

    Shows a byte progress bar on stderr on a terminal (``live``), else a line before and
    after. Returns the files written, with their sha256.
    """
    from arkor._fs import sha256_file
    from arkor.cloud import Artifact

    total = sum(item.size for item in chosen)
    bar = _ByteBar(total, live=live)
    prefix = source_folder(checkpoint) + "/"
    bar.line(f"downloading {len(chosen)} files ({human_size(total)}) of job {job_id}")
    written: list[Artifact] = []
    for item in chosen:
        relative = item.path.removeprefix(prefix)
        destination = into / relative
        session.client.download_artifact(
            session.scope, job_id, item.path, destination, progress=bar.advance
        )
        digest, size = sha256_file(destination)
        written.append(Artifact(path=relative, size=size, sha256=digest))
    bar.finish(f"downloaded {human_size(total)}, every file matching the plane's sha256")
    return written


class _ByteBar:
    """Bytes received out of ``total``: a live bar on a terminal, otherwise plain lines."""

    _WIDTH = 24

    def __init__(self, total: int, *, live: bool) -> None:
        from arkor.cli._output import interactive

        self.total = total
        self.done = 0
        self.live = live and interactive() and sys.stderr.isatty()
        self.started = time.monotonic()
        self._drawn = 0.0

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def advance(self, size: int) -> None:
        self.done += size
        now = time.monotonic()
        if self.live and (now - self._drawn > 0.1 or self.done >= self.total):
            self._drawn = now
            share = min(self.done / self.total, 1.0) if self.total else 1.0
            filled = int(share * self._WIDTH)
            rate = self.done / max(now - self.started, 1e-6)
            sys.stderr.write(
                f"\r\033[2K{'█' * filled}{'░' * (self._WIDTH - filled)} "
                f"{human_size(self.done)} / {human_size(self.total)}  {human_size(int(rate))}/s"
            )
            sys.stderr.flush()

    def finish(self, text: str) -> None:
        if self.live:
            sys.stderr.write("\r\033[2K")
        seconds = time.monotonic() - self.started
        self.line(f"{text} ({seconds:.1f} s)")
