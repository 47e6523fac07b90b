"""Waking event-stream followers, and writing SSE frames by hand.

A follower never polls per event: it takes the job's current signal, reads what is
stored, and sleeps on the signal, which the plane fires after each new event commits.
Taking the signal *before* reading means a commit that lands in between still wakes it.
"""

from __future__ import annotations

import asyncio
import threading


class EventHub:
    """One wake-up signal per job with followers; :meth:`notify` may be called from any thread."""

    def __init__(self) -> None:
        self._signals: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the plane's event loop (at startup)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def signal(self, job_id: str) -> asyncio.Event:
        """The signal the next event of ``job_id`` will set; call on the loop."""
        signal = self._signals.get(job_id)
        if signal is None:
            signal = self._signals[job_id] = asyncio.Event()
        return signal

    def notify(self, job_id: str) -> None:
        """Wake every follower of ``job_id``: new events are stored."""
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._fire(job_id)
        else:
            self._loop.call_soon_threadsafe(self._fire, job_id)

    def _fire(self, job_id: str) -> None:
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()


PING_FRAME = "event: ping\ndata: {}\n\n"
END_FRAME = "event: end\ndata: {}\n\n"


def frame(event_id: int, event_type: str, data: str) -> str:
    """An event's SSE frame; its data is single-line JSON, so nothing needs escaping.

    Events are stored as their frames, so a replay joins stored text and formats nothing.
    """
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n"


def frame_head(stored: str) -> tuple[int, str]:
    """The id and type of the event in a frame made by :func:`frame`."""
    id_line, type_line, _ = stored.split("\n", 2)
    return int(id_line[4:]), type_line[7:]


def frame_data(stored: str) -> str:
    """The event JSON inside a frame made by :func:`frame`."""
    return stored[stored.index("\ndata: ") + 7 : -2]
