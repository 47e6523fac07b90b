"""What each callback receives: one context object per event, with the job it belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arkor.cloud import Artifact, TrainingJob

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class StartedContext:
    """``on_started``: training began."""

    job: TrainingJob
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingLogContext:
    """``on_log``: a ``training.log`` event (every ``logging_steps``, and at eval steps)."""

    job: TrainingJob
    step: int
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    samples_per_second: float | None = None


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
