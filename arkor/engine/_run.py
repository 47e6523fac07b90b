"""What a training run takes and what it gives back; importable without the ML libraries."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from arkor.cloud import JobConfig
from arkor.engine._events import EventSink

if TYPE_CHECKING:
    from arkor.engine._device import Placement

ADAPTER_DIRNAME = "adapter"
"""The final adapter's folder, under the run's output folder."""
CHECKPOINTS_DIRNAME = "checkpoints"
"""Where ``checkpoint-<step>`` folders go, under the run's output folder."""

Status = Literal["completed", "failed", "cancelled"]


@dataclass
class TrainingRun:
    """Everything one run needs: the job, where its files go, where its events go."""

    job_id: str
    config: JobConfig
    output_dir: Path
    sink: EventSink
    stop: threading.Event = field(default_factory=threading.Event)
    dataset_file: Path | None = None
    """The local data file for a ``file`` dataset (the plane's stored upload)."""
    eval_file: Path | None = None
    """The local copy of the evaluation's own rows (``trainer.eval.path``'s upload)."""
    placement: Placement | None = None
    resume: bool = False
    """Continue from the newest checkpoint in ``output_dir`` when there is one."""


@dataclass(frozen=True)
class TrainingOutcome:
    """How the run ended."""

    status: Status
    step: int
    metrics: dict[str, Any]
    adapter_dir: Path | None
    error: str | None = None


def train(run: TrainingRun) -> TrainingOutcome:
    """Run ``run`` to its end, reporting every stage to ``run.sink`` (see ``arkor.engine._train``).

    A job whose ``trainer.resources`` asks for more than one process trains data-parallel,
    this process as rank 0 (see ``arkor.engine._parallel``).
    """
    from arkor.engine._deps import require_local

    require_local()
    if run.config.resources is not None:
        from arkor.cloud import TrainingFailed
        from arkor.engine._parallel import train_data_parallel, world_size
        from arkor.errors import ArkorError

        try:
            size = world_size(run.config, run.placement)
        except ArkorError as error:
            run.sink.emit(TrainingFailed(job_id=run.job_id, error=str(error)))
            return TrainingOutcome("failed", 0, {"step": 0}, None, str(error))
        if size > 1:
            return train_data_parallel(run, size)
    from arkor.engine._train import train as train_with_transformers

    return train_with_transformers(run)
