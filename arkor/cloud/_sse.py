"""Server-Sent Events: a frame parser, the reconnect schedule, and a job's event follower.

The parser is incremental and never yields half a frame: a connection that drops in the
middle of one loses only that partial frame, which the ``Last-Event-ID`` resume replays.
It works a frame at a time, with a fast path for the plane's own frames (``id``, ``event``,
``data``, in that order), because a replay is tens of thousands of them.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from pydantic import TypeAdapter, ValidationError

from arkor.cloud._errors import CloudApiError
from arkor.cloud._models import TERMINAL_EVENT_TYPES, JobEvent

if TYPE_CHECKING:
    import httpx

    from arkor.cloud._client import CloudApiClient
    from arkor.cloud._state import ProjectScope

_PLANE_FRAME = re.compile(r"id: ([^\n\0]*)\nevent: ([^\n]*)\ndata: ([^\n]*)\n\n")
_RETRIED_STATUSES = frozenset({404, 408, 429})
_EVENT = TypeAdapter[JobEvent](JobEvent)


class SseFrame(NamedTuple):
    """One dispatched frame. ``id`` and ``event`` are what this frame itself set, or None."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SseParser:
    """Feed decoded text in chunks of any size; get back every frame a blank line completes.

    Lines end with CRLF, LF or CR (a CR at the end of a chunk waits for the next one, in
    case an LF follows). Comments (``:``) and unknown fields are ignored; several ``data``
    lines join with newlines; an ``id`` holding NUL and a non-numeric ``retry`` are ignored,
    as the WHATWG rules say. Unlike those rules, a frame with only ``event`` (like
    ``event: end``) is dispatched too.
    """

    def __init__(self) -> None:
        self._buffer = ""  # LF-only text not yet ending in a blank line
        self._cr = False  # the last chunk ended with a CR
        self._started = False

    def feed(self, text: str) -> list[SseFrame]:
        """Add ``text`` and return the frames it completes, in order."""
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._cr:
            text = "\r" + text
        self._cr = text.endswith("\r")
        if self._cr:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self._frames(self._buffer + text)

    def finish(self) -> list[SseFrame]:
        """The stream ended cleanly: settle a trailing CR; an unterminated frame is dropped."""
        frames = self._frames(self._buffer + "\n") if self._cr else []
        self._buffer, self._cr = "", False
        return frames

    def _frames(self, text: str) -> list[SseFrame]:
        """Every frame that ends in ``text``; the rest waits in the buffer."""
        frames: list[SseFrame] = []
        append, match = frames.append, _PLANE_FRAME.match
        position = 0
        while True:
            found = match(text, position)
            if found is not None:
                id, event, data = found.groups()
                append(SseFrame(data, event, id))
                position = found.end()
                continue
            end = text.find("\n\n", position)
            if end < 0:
                break
            frame = _general_frame(text[position:end])
            if frame is not None:
                append(frame)
            position = end + 2
        self._buffer = text[position:]
        return frames


def _general_frame(block: str) -> SseFrame | None:
    """The frame of one block of lines (blank lines can only lead it), or None if it sets nothing."""
    data: list[str] = []
    event = id = None
    retry: int | None = None
    seen = False
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" in value:
                continue
            id = value
        elif name == "retry":
            if not (value.isascii() and value.isdigit()):
                continue
            retry = int(value)
        else:
            continue
        seen = True
    return SseFrame("\n".join(data), event, id, retry) if seen else None


def iter_frames(chunks: Iterable[str]) -> Iterator[SseFrame]:
    """Parse a stream of decoded text chunks into frames (see :class:`SseParser`)."""
    parser = SseParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.25,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): ``base·2ⁿ`` ±``jitter``, ≤ ``cap``.

    The jitter spreads the reconnects of many clients after one plane restart.
    """
    delay = min(cap, base * 2.0 ** min(attempt, 64))
    return min(cap, delay * (1.0 + jitter * (2.0 * rand() - 1.0)))


class FollowStop:
    """Ends a :func:`follow_events` from another thread, at once.

    Even a read blocked on a quiet stream returns: :meth:`set` shuts down the socket of the
    connection being read (where the transport exposes it, as httpx's own does; elsewhere
    the follow ends at the next chunk or ping), and a wait between reconnects wakes up.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def set(self) -> None:
        self._event.set()
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True, early, once set."""
        return self._event.wait(seconds)

    @contextlib.contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        """While the block runs, :meth:`set` also cuts ``response``'s connection."""
        stream = response.extensions.get("network_stream")
        found = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = found if isinstance(found, socket.socket) else None
        try:
            yield
        finally:
            with self._lock:
                self._socket = None


def follow_events(
    client: CloudApiClient,
    scope: ProjectScope,
    job_id: str,
    *,
    last_event_id: int | None = None,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: float = 0.25,
    read_timeout: float = 60.0,
    max_retries: int | None = None,
    sleep: Callable[[float], object] | None = None,
    stop: FollowStop | None = None,
) -> Iterator[JobEvent]:
    """Yield a job's events after ``last_event_id``, each once and in order, until ``end``.

    A dropped or failed connection is retried with ``base_delay·2ⁿ`` (±``jitter``, at most
    ``max_delay``) and resumed with ``Last-Event-ID``; only real events reset the schedule,
    so a plane that sends just pings or garbage still backs off. A clean close after real
    events reconnects after about ``base_delay`` (or the plane's ``retry:`` hint). 401,
    403, 410 and 426 raise at once, as does any 4xx but 404, 408 and 429.
    ``read_timeout`` must exceed the plane's ping interval (15 s). ``max_retries`` bounds
    consecutive failed connections without progress (default: retry for as long as it
    takes), then the last error is raised. ``stop``, set from another thread, ends the
    iteration at once, without an error.

    Example::

        for event in follow_events(client, state, job.id):
            print(event.type)
    """
    for batch in follow_event_batches(
        client,
        scope,
        job_id,
        last_event_id=last_event_id,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=jitter,
        read_timeout=read_timeout,
        max_retries=max_retries,
        sleep=sleep,
        stop=stop,
    ):
        yield from batch


def follow_event_batches(
    client: CloudApiClient,
    scope: ProjectScope,
    job_id: str,
    *,
    last_event_id: int | None = None,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: float = 0.25,
    read_timeout: float = 60.0,
    max_retries: int | None = None,
    sleep: Callable[[float], object] | None = None,
    stop: FollowStop | None = None,
) -> Iterator[list[JobEvent]]:
    """:func:`follow_events`, a list per chunk read from the network (never an empty one).

    For a consumer that hands events to another thread: one handoff per chunk, not per
    event, is what lets a replay of thousands of events keep up with the stream.
    """
    reader = _EventReader(last_event_id)
    pause = sleep or (stop.wait if stop is not None else time.sleep)
    failures = 0
    while not (stop is not None and stop.is_set()):
        progressed = False
        reader.ended = False
        try:
            with (
                client.stream_events(
                    scope, job_id, last_event_id=reader.last, timeout=read_timeout
                ) as response,
                stop.watching(response) if stop is not None else contextlib.nullcontext(),
            ):
                parser = SseParser()
                for chunk in _then_finish(response.iter_text()):
                    if stop is not None and stop.is_set():
                        return
                    batch = reader.events(parser.feed(chunk) if chunk else parser.finish())
                    if reader.retry_ms is not None:
                        base_delay = min(reader.retry_ms / 1000, max_delay)
                    if batch:
                        progressed = True
                        yield batch
                    if reader.ended:
                        return
        except CloudApiError as error:
            if reader.ended or (stop is not None and stop.is_set()):
                return
            failures = 0 if progressed else failures + 1
            if not _retryable(error.status) or (max_retries is not None and failures > max_retries):
                raise
        else:
            failures = 0 if progressed else failures + 1
        pause(backoff_delay(max(failures - 1, 0), base=base_delay, cap=max_delay, jitter=jitter))


class _EventReader:
    """Frames to events for :func:`follow_event_batches`: new ids only, valid events only.

    ``last`` is the id of the last event passed on (what a reconnect resumes after);
    ``ended`` is set by ``end`` or a terminal event; ``retry_ms`` is the plane's last hint.
    """

    def __init__(self, last: int | None) -> None:
        self.last = last
        self.ended = False
        self.retry_ms: int | None = None
        self._validate = _EVENT.validator.validate_json

    def events(self, frames: list[SseFrame]) -> list[JobEvent]:
        """The events among ``frames``, in order; pings, repeats and malformed ones are skipped."""
        batch: list[JobEvent] = []
        last, validate = self.last, self._validate
        for data, name, id, retry in frames:
            if retry is not None:
                self.retry_ms = retry
            if name == "end":
                self.ended = True
                break
            if id is None or name == "ping":
                continue
            try:
                event_id = int(id)
            except ValueError:
                continue
            if last is not None and event_id <= last:
                continue
            try:
                event: JobEvent = validate(data)
            except ValidationError:
                continue
            last = event_id
            batch.append(event)
            if event.type in TERMINAL_EVENT_TYPES:
                self.ended = True
                break
        self.last = last
        return batch


def _then_finish(chunks: Iterable[str]) -> Iterator[str]:
    """The chunks, then ``""`` for the clean end of the stream (the cue to call ``finish``)."""
    for chunk in chunks:
        if chunk:
            yield chunk
    yield ""


def _retryable(status: int | None) -> bool:
    """Connection failures (no status), 404, 408, 429 and 5xx are worth another try."""
    if status is None or status >= 500:
        return True
    return status in _RETRIED_STATUSES


__all__ = [
    "FollowStop",
    "SseFrame",
    "SseParser",
    "backoff_delay",
    "follow_event_batches",
    "follow_events",
    "iter_frames",
]
