"""``arkor start``: replay the built manifest on a control plane and follow the run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import EvalCompleted, JobEvent
    from arkor.sdk import Trainer, TrainingResult


def start(
    manifest: Annotated[
        Path | None,
        typer.Argument(
            help="Manifest to run. Default: .arkor/build/manifest.json (built first if missing).",
            show_default=False,
        ),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the manifest first when it is stale.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Submit the job and return without following it.")
    ] = False,
    json_output: JsonOption = False,
) -> int:
    """Run the manifest on a control plane: upload data, submit, follow, call the callbacks.

    A run with [trainer.eval] ends with a table: each metric for the base model and the
    adapter on the held-out rows, and the change.

    Uses the configured plane, else a running `arkor serve`, else one embedded in this
    process. Exit 0 when the job completes, 1 when it fails or is cancelled, 130 on Ctrl-C.

    Examples:

      arkor start

      arkor start --rebuild --json
    """
    from contextlib import AbstractContextManager, nullcontext

    from arkor.cli._output import stdout_reserved_for_json

    reserve: AbstractContextManager[TextIO] = (
        stdout_reserved_for_json() if json_output else nullcontext(sys.stdout)
    )
    with reserve as out:
        return _run(manifest, rebuild=rebuild, detach=detach, json_output=json_output, out=out)


def _run(
    manifest: Path | None, *, rebuild: bool, detach: bool, json_output: bool, out: TextIO
) -> int:
    """The command's body; ``out`` is where results go (in JSON mode, the only writer to stdout)."""
    from arkor.cli._output import echo, print_json_line
    from arkor.cli._progress import RunDisplay
    from arkor.errors import ManifestError, UsageError
    from arkor.manifest import build_project, manifest_path_for
    from arkor.sdk import trainer_from_manifest

    path = manifest or manifest_path_for(Path.cwd())
    if manifest is None and not path.exists():
        _note(json_output, "No manifest yet: building it first.")
        path = build_project().path
    try:
        trainer = trainer_from_manifest(path)
    except ManifestError:
        if not rebuild:
            raise
        _note(json_output, "The manifest is out of date: rebuilding it.")
        path = build_project().path
        trainer = trainer_from_manifest(path)
    try:
        session = trainer.connect()
        if detach and session.kind == "embedded":
            raise UsageError(
                "--detach needs a plane that outlives this command, and none is running here. "
                "Start one with `arkor serve` (or configure `[cloud] url`), then run `arkor start --detach`."
            )
        _note(json_output, f"Using the {session.describe()}.")
        job = trainer.start()
        _note(json_output, f"Job {job.id} submitted ({job.name}).")
        if detach:
            if json_output:
                print_json_line({"job": job.to_wire(), "plane": session.url}, out)
            else:
                echo(
                    f"Follow it with `arkor jobs logs {job.id} --follow`; cancel with `arkor jobs cancel {job.id}`."
                )
            return 0
        display = RunDisplay(
            json_lines=json_output,
            stream=out,
            summary_states_error=True,
            evaluation=trainer.config.eval,
            final_eval_later=True,
        )
        finals: list[EvalCompleted] = []

        def on_event(event: JobEvent) -> None:
            if event.type == "eval.completed" and event.final:
                finals.append(event)
            display.event(event)

        try:
            result = trainer.wait(on_event=on_event, after_callbacks=display.redraw)
        except KeyboardInterrupt:
            _interrupted(trainer, job.id, session.kind == "embedded")
            return 130
        _summary(trainer, result, json_output, out, finals)
        return 0 if result.status == "completed" else 1
    finally:
        trainer.close()


def _note(json_output: bool, message: str) -> None:
    """Progress notes go to stderr in JSON mode, so stdout stays machine-readable."""
    if json_output:
        typer.echo(message, err=True)
    else:
        typer.echo(message)


def _interrupted(trainer: Trainer, job_id: str, embedded: bool) -> None:
    if embedded:
        try:
            trainer.cancel()
        except Exception as error:  # the plane may already be going down
            typer.echo(f"\nInterrupted; cancelling job {job_id} failed: {error}", err=True)
            return
        typer.echo(
            f"\nInterrupted: cancelled job {job_id}, since the embedded plane running it stops with "
            "this command. Run `arkor serve` in another terminal to keep jobs running after Ctrl-C.",
            err=True,
        )
        return
    typer.echo(
        f"\nStopped waiting; job {job_id} goes on. Reattach with `arkor jobs logs {job_id} --follow`, "
        f"or cancel it with `arkor jobs cancel {job_id}`.",
        err=True,
    )


def _summary(
    trainer: Trainer,
    result: TrainingResult,
    json_output: bool,
    out: TextIO,
    finals: list[EvalCompleted],
) -> None:
    """How the run ended; in human mode each final eval's table too (JSON lines carried it)."""
    from arkor.cli._output import echo, eval_table_lines, print_json_line, style

    adapter = _adapter_location(trainer, result)
    if json_output:
        print_json_line(
            {
                "job": result.job.to_wire(),
                "status": result.status,
                "metrics": result.metrics,
                "adapter": adapter,
                "error": result.error,
            },
            out,
        )
        return
    mark = style("✓", "green") if result.status == "completed" else style("✗", "red")
    echo(f"\n{mark} Job {result.job.id}: {result.status}")
    for key in ("step", "trainLoss", "evalLoss"):
        if key in result.metrics:
            value = result.metrics[key]
            echo(f"  {key:<10}{value:.4f}" if isinstance(value, float) else f"  {key:<10}{value}")
    if adapter:
        echo(f"  adapter   {adapter}")
    if result.error and result.status != "completed":
        echo(f"  error     {result.error}")
    for event in finals:
        echo("")
        for line in eval_table_lines(event):
            echo(line)
    if result.status == "completed":
        job_id = result.job.id
        echo(
            f"\nNext: `arkor chat --job {job_id}` to talk to it, `arkor deploy {job_id}` to serve it."
        )


def _adapter_location(trainer: Trainer, result: TrainingResult) -> str | None:
    """Where the final adapter is: a folder on this machine for a local plane, else its artifact path."""
    if result.status != "completed":
        return None
    adapter = next(
        (a.path for a in result.artifacts if a.path.endswith("adapter_model.safetensors")), None
    )
    if adapter is None:
        return None
    folder = adapter.rsplit("/", 1)[0]
    session = trainer.session
    if session is not None and session.kind in ("local", "embedded"):
        from arkor._home import arkor_home

        return str(arkor_home() / "local" / "artifacts" / result.job.id / folder)
    return f"{folder}/ (artifacts of job {result.job.id}; download with the API)"
