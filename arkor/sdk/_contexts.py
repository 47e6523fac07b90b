"""What each callback receives: one context object per event, with the job it belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arkor.cloud import Artifact, EvalCompleted, EvalSample, EvalScore, TrainingJob, TrainingLog

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class StartedContext:
    """``on_started``: training began.

    It begins again when a plane resumes a job that lost its plane mid-run; then
    ``metadata["resumedFromStep"]`` is the step of the checkpoint it continues from.
    """

    job: TrainingJob
    metadata: dict[str, Any] = field(default_factory=dict)


class TrainingLogContext:
    """``on_log``: a ``training.log`` event (every ``logging_steps``, and at eval steps).

    A read-only view of the event rather than a copy of its fields: a replay delivers tens
    of thousands of these, so making one must cost next to nothing.
    """

    __slots__ = ("_event", "_job")

    def __init__(self, job: TrainingJob, event: TrainingLog) -> None:
        self._job = job
        self._event = event

    @property
    def job(self) -> TrainingJob:
        return self._job

    @property
    def step(self) -> int:
        return self._event.step

    @property
    def loss(self) -> float | None:
        return self._event.loss

    @property
    def eval_loss(self) -> float | None:
        return self._event.eval_loss

    @property
    def learning_rate(self) -> float | None:
        return self._event.learning_rate

    @property
    def epoch(self) -> float | None:
        return self._event.epoch

    @property
    def samples_per_second(self) -> float | None:
        return self._event.samples_per_second

    def __repr__(self) -> str:
        return (
            f"TrainingLogContext(job={self._job.id!r}, step={self.step}, loss={self.loss}, "
            f"eval_loss={self.eval_loss}, learning_rate={self.learning_rate}, "
            f"epoch={self.epoch}, samples_per_second={self.samples_per_second})"
        )


@dataclass(frozen=True)
class CheckpointContext:
    """``on_checkpoint``: a checkpoint was saved; ``infer`` asks it a question."""

    job: TrainingJob
    step: int
    artifacts: list[Artifact]
    _infer: Callable[..., httpx.Response] = field(repr=False)

    def infer(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        **extra: Any,
    ) -> httpx.Response:
        """Chat with this checkpoint; returns the raw response (JSON, or SSE with ``stream``)."""
        return self._infer(
            messages=messages,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stream=stream,
            **extra,
        )


@dataclass(frozen=True)
class EvalContext:
    """``on_eval``: the base model and the adapter answered the held-out rows.

    ``metrics`` holds one :class:`~arkor.cloud.EvalScore` per metric (custom metrics
    included, computed here from ``samples``), each with ``base``, ``adapter`` and the row
    ``count``. ``final`` marks the eval after training, ``checkpoint`` a checkpoint's;
    ``error`` is set (and ``metrics`` empty) when the eval could not run. ``warnings``
    says when the rows are too few to trust a percentage.
    """

    job: TrainingJob
    event: EvalCompleted = field(repr=False)

    @property
    def step(self) -> int | None:
        return self.event.step

    @property
    def checkpoint(self) -> int | None:
        return self.event.checkpoint

    @property
    def final(self) -> bool:
        return self.event.final

    @property
    def requested(self) -> bool:
        return self.event.requested

    @property
    def rows(self) -> int:
        return self.event.rows

    @property
    def metrics(self) -> list[EvalScore]:
        return self.event.metrics

    @property
    def samples(self) -> list[EvalSample]:
        return self.event.samples

    @property
    def warnings(self) -> list[str]:
        return self.event.warnings

    @property
    def error(self) -> str | None:
        return self.event.error

    def metric(self, name: str) -> EvalScore | None:
        """The score named ``name`` (``json_valid``, ``my_project.metrics:f1``), if measured."""
        return next((score for score in self.event.metrics if score.name == name), None)


@dataclass(frozen=True)
class CompletedContext:
    """``on_completed``: training finished; exclusive with ``on_failed``."""

    job: TrainingJob
    metrics: dict[str, Any]
    artifacts: list[Artifact]


@dataclass(frozen=True)
class FailedContext:
    """``on_failed``: training failed; exclusive with ``on_completed`` (a cancelled run calls neither)."""

    job: TrainingJob
    error: str
    step: int | None = None
