"""Deliver a job's events to the user's callbacks: each event once, in order.

Callbacks may be plain functions or coroutines. A callback that raises stops the wait at
once with a :class:`CallbackError` whose ``__cause__`` is the user's exception: it is the
user's bug, not a transport problem, so it is never retried. Custom metrics are the
user's code too, scored on each ``eval.completed`` before the callbacks see it
(:func:`score_custom_metrics`): one that raises stops the wait the same way, with a
:class:`MetricError` naming it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arkor.cloud import (
    CheckpointSaved,
    EvalCompleted,
    JobEvent,
    TrainingCompleted,
    TrainingFailed,
    TrainingJob,
    TrainingLog,
    TrainingStarted,
)
from arkor.errors import ArkorError, UsageError
from arkor.evals import CustomMetric, with_custom_metrics
from arkor.manifest._callbacks import CALLBACK_EVENTS
from arkor.sdk._contexts import (
    CheckpointContext,
    CompletedContext,
    EvalContext,
    FailedContext,
    StartedContext,
    TrainingLogContext,
)

Callback = Callable[[Any], Any]
CALLBACK_NAMES = CALLBACK_EVENTS


class CallbackError(ArkorError):
    """A user callback raised; the original exception is ``__cause__``."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.callback = name
        super().__init__(f"The `{name}` callback raised {type(error).__name__}: {error}")


class MetricError(CallbackError):
    """A custom metric raised (or returned something that is not a number); ``__cause__`` says what."""

    def __init__(self, target: str, error: BaseException) -> None:
        self.callback = target
        ArkorError.__init__(
            self,
            f"The custom metric `{target}` raised {type(error).__name__}: {error}. It is called "
            "as metric(prediction, reference, row) for each answer and must return a number in "
            "[0, 1] or a dict of them.",
        )


def score_custom_metrics(event: JobEvent, metrics: Mapping[str, CustomMetric]) -> JobEvent:
    """``event`` with each custom metric scored, when it is an ``eval.completed``.

    The worker never runs the user's code, so the client does, before callbacks and
    display; a metric that raises stops the wait like a callback that raises.
    """
    if not metrics or not isinstance(event, EvalCompleted):
        return event
    for target, function in metrics.items():
        try:
            event = with_custom_metrics(event, {target: function})
        except Exception as error:
            raise MetricError(target, error) from error
    return event


def check_callback_names(callbacks: Mapping[str, Callback]) -> None:
    """Refuse a misspelt callback name before a job is submitted, not once it runs."""
    unknown = set(callbacks) - set(CALLBACK_NAMES)
    if unknown:
        raise UsageError(
            f"Unknown callback name(s): {', '.join(sorted(unknown))}. "
            f"The callbacks are {', '.join(CALLBACK_NAMES)}; rename the key to one of them."
        )


class Dispatcher:
    """Turns events into contexts and calls the matching callback (the stream guarantees once, in order)."""

    def __init__(
        self,
        callbacks: Mapping[str, Callback],
        job: Callable[[], TrainingJob],
        infer: Callable[[int], Callable[..., Any]],
    ) -> None:
        check_callback_names(callbacks)
        self._callbacks = dict(callbacks)
        self._job = job
        self._infer = infer

    def call(self, event: JobEvent) -> Awaitable[None] | None:
        """Call the callback for ``event``; a coroutine callback's awaitable is returned to await."""
        name = _CALLBACK_FOR.get(event.type)
        callback = self._callbacks.get(name) if name is not None else None
        if name is None or callback is None:  # no context is built for nobody
            return None
        try:
            result = callback(self._context(event))
        except Exception as error:
            raise CallbackError(name, error) from error
        if result is not None and inspect.isawaitable(result):
            return self._await(name, result)
        return None

    def dispatch(self, event: JobEvent) -> None:
        """Synchronous delivery: coroutine callbacks run to completion on a private loop."""
        pending = self.call(event)
        if pending is not None:
            asyncio.run(_as_coroutine(pending))

    async def dispatch_async(self, event: JobEvent) -> None:
        """Asynchronous delivery: coroutine callbacks are awaited on the caller's loop."""
        pending = self.call(event)
        if pending is not None:
            await pending

    async def _await(self, name: str, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception as error:
            raise CallbackError(name, error) from error

    def _context(self, event: JobEvent) -> Any:
        job = self._job()
        if isinstance(event, TrainingLog):
            return TrainingLogContext(job, event)
        if isinstance(event, TrainingStarted):
            return StartedContext(job, event.metadata or {})
        if isinstance(event, CheckpointSaved):
            return CheckpointContext(
                job, event.step, list(event.artifacts or []), self._infer(event.step)
            )
        if isinstance(event, TrainingCompleted):
            return CompletedContext(job, dict(event.metrics or {}), list(event.artifacts or []))
        if isinstance(event, TrainingFailed):
            return FailedContext(job, event.error, event.step)
        if isinstance(event, EvalCompleted):
            return EvalContext(job, event)
        raise AssertionError(f"no context for {event.type}")


_CALLBACK_FOR = {
    "training.started": "on_started",
    "training.log": "on_log",
    "checkpoint.saved": "on_checkpoint",
    "eval.completed": "on_eval",
    "training.completed": "on_completed",
    "training.failed": "on_failed",
}
"""The callback each event calls; ``training.cancelled`` calls none."""


async def _as_coroutine(pending: Awaitable[None]) -> None:
    await pending
