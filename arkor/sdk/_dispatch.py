"""Deliver a job's events to the user's callbacks: each event once, in order.

Callbacks may be plain functions or coroutines. A callback that raises stops the wait at
once with a :class:`CallbackError` whose ``__cause__`` is the user's exception: it is the
user's bug, not a transport problem, so it is never retried.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arkor.cloud import (
    CheckpointSaved,
    JobEvent,
    TrainingCompleted,
    TrainingFailed,
    TrainingJob,
    TrainingLog,
    TrainingStarted,
)
from arkor.errors import ArkorError, UsageError
from arkor.sdk._contexts import (
    CheckpointContext,
    CompletedContext,
    FailedContext,
    StartedContext,
    TrainingLogContext,
)

Callback = Callable[[Any], Any]
CALLBACK_NAMES = ("on_started", "on_log", "on_checkpoint", "on_completed", "on_failed")


class CallbackError(ArkorError):
    """A user callback raised; the original exception is ``__cause__``."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.callback = name
        super().__init__(f"The `{name}` callback raised {type(error).__name__}: {error}")


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
        raise AssertionError(f"no context for {event.type}")


_CALLBACK_FOR = {
    "training.started": "on_started",
    "training.log": "on_log",
    "checkpoint.saved": "on_checkpoint",
    "training.completed": "on_completed",
    "training.failed": "on_failed",
}
"""The callback each event calls; ``training.cancelled`` calls none."""


async def _as_coroutine(pending: Awaitable[None]) -> None:
    await pending
