"""``arkor export``: a job's adapter as a portable PEFT folder, a merged model, or GGUF."""

from __future__ import annotations

import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from arkor.cli._options import JsonOption
from arkor.cli.jobs import CheckpointOption, ForceOption, JobIdArgument


class Format(StrEnum):
    peft = "peft"
    merged = "merged"
    gguf = "gguf"


def export(
    job_id: JobIdArgument,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help=(
                "peft: the adapter and tokenizer, naming the base as the config does; merged: "
                "the base with the adapter merged in, a transformers model folder; gguf: that "
                "model as one f16 .gguf file for llama.cpp (Llama-architecture models)."
            ),
            case_sensitive=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The folder to write (created; an existing one must be empty, or pass --force).",
            show_default=False,
            metavar="DIR",
            file_okay=False,
        ),
    ],
    checkpoint: CheckpointOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
) -> int:
    """Export a job's final adapter (or a checkpoint) for use outside Arkor.

    The adapter is downloaded from the plane that trained it (checked against its
    sha256); merged and gguf then load the job's base model here, at the commit the job
    pinned. DIR is written whole or not at all.

    Examples:

      arkor export job_0123 --format merged --out ./support-bot

      arkor export job_0123 --format gguf --out ./gguf --checkpoint 300
    """
    from arkor.cli._output import echo, human_size, print_json_line
    from arkor.cli.jobs import fetch, find_job, pick_artifacts
    from arkor.engine._export import (
        EXPORT_FORMATS,
        TRAINER_STATE,
        check_target,
        export_adapter,
    )
    from arkor.sdk import open_session

    check_target(out, force=force)
    if fmt is not Format.peft:
        from arkor.engine import require_local

        require_local()
    with tempfile.TemporaryDirectory(prefix="arkor-export-") as scratch:
        adapter = Path(scratch) / "adapter"
        session = open_session()
        try:
            envelope = find_job(session, job_id)
            chosen = [
                item
                for item in pick_artifacts(
                    envelope, session.client.list_artifacts(session.scope, job_id), checkpoint
                )
                if not TRAINER_STATE.match(item.path.rsplit("/", 1)[-1])
            ]
            fetch(session, job_id, chosen, adapter, checkpoint=checkpoint, live=not json_output)
        finally:
            session.close()
        job = envelope.job
        files = export_adapter(
            adapter,
            out,
            next(name for name in EXPORT_FORMATS if name == fmt.value),
            model=job.config.model,
            model_pin=job.config.model_pin,
            name=job.name,
            force=force,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
        )
    folder = out.resolve()
    written = [(file.relative_to(out).as_posix(), file.stat().st_size) for file in files]
    if json_output:
        print_json_line(
            {
                "job": job.id,
                "format": fmt.value,
                "source": "adapter" if checkpoint is None else f"checkpoint-{checkpoint}",
                "baseModel": job.config.model,
                "out": str(folder),
                "files": [{"path": path, "size": size} for path, size in written],
            }
        )
        return 0
    what = "final adapter" if checkpoint is None else f"checkpoint at step {checkpoint}"
    echo(f"Exported job {job.id}'s {what} as {fmt.value} (base {job.config.model}) to {folder}:")
    for path, size in written:
        echo(f"  {path:<28} {human_size(size):>9}")
    return 0
