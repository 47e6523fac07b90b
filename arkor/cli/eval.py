"""``arkor eval``: run a completed job's eval again, on the plane that ran it.

The job's base model and its final adapter (or a checkpoint) answer the held-out rows
the run kept aside, greedily, with the engine code the run used, so the same rows give
the same answers and numbers. Custom metrics (the user's code) run here, never on a
plane: when the folder's build manifest names the ones the job's config lists.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import JsonOption
from arkor.cli.jobs import CheckpointOption, JobIdArgument

if TYPE_CHECKING:
    from arkor.cloud import EvalCompleted, TrainingJob
    from arkor.evals import CustomMetric
    from arkor.sdk import Session

RowsOption = Annotated[
    int | None,
    typer.Option(
        "--rows",
        help="Evaluate this many held-out rows (a seeded sample) instead of the job's eval.rows.",
        show_default=False,
        metavar="N",
        min=1,
        max=1000,
    ),
]


def eval_job(
    job_id: JobIdArgument,
    checkpoint: CheckpointOption = None,
    rows: RowsOption = None,
    json_output: JsonOption = False,
) -> int:
    """Run a completed job's eval again: its base and its adapter answer the held-out rows.

    Prints the table (metric, base, adapter, change); the event is also kept with the
    job's events (`arkor jobs show`). Progress goes to stderr.

    Examples:

      arkor eval job_0123

      arkor eval job_0123 --checkpoint 300 --rows 100 --json
    """
    from arkor.cli._output import echo, print_json_line
    from arkor.cli.jobs import find_job
    from arkor.sdk import open_session

    session = open_session()
    try:
        job = find_job(session, job_id, events=False).job
        custom = custom_metrics(job)
        bar = _ProgressBar(live=not json_output)
        what = "final adapter" if checkpoint is None else f"checkpoint at step {checkpoint}"
        bar.line(f"evaluating job {job_id}'s {what} against its base on the {session.describe()}")
        event = _evaluate(session, job_id, checkpoint=checkpoint, rows=rows, progress=bar)
        bar.finish()
    finally:
        session.close()
    event = scored(event, custom)
    if json_output:
        print_json_line(event.to_wire())
        return 0
    from arkor.cli._output import eval_table_lines

    for line in eval_table_lines(event):
        echo(line)
    return 1 if event.error else 0


def _evaluate(
    session: Session,
    job_id: str,
    *,
    checkpoint: int | None,
    rows: int | None,
    progress: _ProgressBar,
) -> EvalCompleted:
    """The plane's eval; an unknown checkpoint is a usage error naming the saved ones."""
    from arkor.cloud import NotFoundError
    from arkor.errors import UsageError

    try:
        return session.client.evaluate(
            session.scope,
            job_id,
            checkpoint=checkpoint,
            rows=rows,
            on_progress=progress.advance,
        )
    except NotFoundError as error:
        if checkpoint is None:
            raise
        from arkor.cli.jobs import checkpoint_steps

        steps = checkpoint_steps(session.client.list_artifacts(session.scope, job_id))
        saved = (
            f"its checkpoints are at steps {', '.join(str(step) for step in steps)}"
            if steps
            else "it saved no checkpoint"
        )
        raise UsageError(
            f"{error.message} Job {job_id} has no checkpoint at step {checkpoint}: {saved}. "
            "Give one of those steps to --checkpoint, or leave it out for the final adapter."
        ) from None


def custom_metrics(job: TrainingJob, *, quiet: bool = False) -> dict[str, CustomMetric]:
    """The custom metrics the job's config names, from this folder's build manifest.

    They are the user's code, so they run here; a job whose metrics the folder's manifest
    does not provide gets its built-in metrics only, and (unless ``quiet``) a warning
    says which are missing.
    """
    from arkor.cli._output import warn
    from arkor.errors import ArkorError
    from arkor.evals import is_builtin

    spec = job.config.eval
    wanted = [name for name in (spec.metrics if spec else []) if not is_builtin(name)]
    if not wanted:
        return {}
    from arkor.manifest import manifest_path_for, project_root_of, read_manifest
    from arkor.sdk import load_custom_metrics

    path = manifest_path_for(Path.cwd())
    why = f"this folder's build manifest ({path}) does not provide them"
    loaded: dict[str, CustomMetric] = {}
    try:
        if path.is_file():
            loaded = load_custom_metrics(read_manifest(path), project_root_of(path))
    except ArkorError as error:
        why = f"they could not be loaded: {error}"
    found = {target: loaded[target] for target in wanted if target in loaded}
    missing = [target for target in wanted if target not in found]
    if missing and not quiet:
        warn(
            f"Job {job.id} also measures {', '.join(missing)}, left out because {why}. Run "
            "`arkor eval` in the job's project folder, after `arkor build`, to include them."
        )
    return found


def scored(event: EvalCompleted, custom: dict[str, CustomMetric]) -> EvalCompleted:
    """``event`` with each custom metric scored; one that raises is a :class:`MetricError`."""
    from arkor.evals import with_custom_metrics
    from arkor.sdk import MetricError

    for target, function in custom.items():
        try:
            event = with_custom_metrics(event, {target: function})
        except Exception as error:  # the user's code may raise anything
            raise MetricError(target, error) from error
    return event


class _ProgressBar:
    """Generations done out of the total: a live bar on a terminal, otherwise plain lines."""

    _WIDTH = 24

    def __init__(self, *, live: bool) -> None:
        from arkor.cli._output import interactive

        self.live = live and interactive() and sys.stderr.isatty()
        self.started = time.monotonic()
        self.total = 0
        self._drawn = 0.0

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def advance(self, done: int, total: int) -> None:
        self.total = total
        now = time.monotonic()
        if not self.live or (now - self._drawn < 0.1 and done < total):
            return
        self._drawn = now
        share = min(done / total, 1.0) if total else 1.0
        filled = int(share * self._WIDTH)
        elapsed = now - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        sys.stderr.write(
            f"\r\033[2K{'█' * filled}{'░' * (self._WIDTH - filled)} {done}/{total} answers"
            f"  {elapsed:.0f} s, about {eta:.0f} s left"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[2K")
        seconds = time.monotonic() - self.started
        self.line(f"evaluated: {self.total} answers in {seconds:.1f} s")
