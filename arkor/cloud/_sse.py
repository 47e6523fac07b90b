"""Server-Sent Events: a frame parser, the reconnect schedule, and a job's event follower.

The parser is incremental and never yields half a frame: a connection that drops in the
middle of one loses only that partial frame, which the ``Last-Event-ID`` resume replays.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from arkor.cloud._errors import CloudApiError
from arkor.cloud._models import TERMINAL_EVENT_TYPES, JobEvent

if TYPE_CHECKING:
    from arkor.cloud._client import CloudApiClient
    from arkor.cloud._state import ProjectScope

_EOL = re.compile(r"\r\n|\r|\n")
_RETRIED_STATUSES = frozenset({404, 408, 429})
_EVENT = TypeAdapter[JobEvent](JobEvent)


@dataclass(frozen=True)
class SseFrame:
    """One dispatched frame. ``id`` and ``event`` are what this frame itself set, or None."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None


@dataclass
class SseParser:
    """Feed decoded text in chunks of any size; get back every frame a blank line completes.

    Lines end with CRLF, LF or CR (a CR at the end of a chunk waits for the next one, in
    case an LF follows). Comments (``:``) and unknown fields are ignored; several ``data``
    lines join with newlines; an ``id`` holding NUL and a non-numeric ``retry`` are ignored,
    as the WHATWG rules say. Unlike those rules, a frame with only ``event`` (like
    ``event: end``) is dispatched too.
    """

    _buffer: str = ""
    _started: bool = False
    _data: list[str] = field(default_factory=list)
    _event: str | None = None
    _id: str | None = None
    _retry: int | None = None
    _seen: bool = False

    def feed(self, text: str) -> list[SseFrame]:
        """Add ``text`` and return the frames it completes, in order."""
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._buffer + text
        frames: list[SseFrame] = []
        position = 0
        while match := _EOL.search(buffer, position):
            if match.group() == "\r" and match.end() == len(buffer):
                break
            frame = self._line(buffer[position : match.start()])
            if frame is not None:
                frames.append(frame)
            position = match.end()
        self._buffer = buffer[position:]
        return frames

    def finish(self) -> list[SseFrame]:
        """The stream ended cleanly: settle a trailing CR; an unterminated frame is dropped."""
        frames: list[SseFrame] = []
        if self._buffer.endswith("\r"):
            for line in self._buffer[:-1], "":
                frame = self._line(line)
                if frame is not None:
                    frames.append(frame)
        self._buffer = ""
        return frames

    def _line(self, line: str) -> SseFrame | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" in value:
                return None
            self._id = value
        elif name == "retry":
            if not (value.isascii() and value.isdigit()):
                return None
            self._retry = int(value)
        else:
            return None
        self._seen = True
        return None

    def _dispatch(self) -> SseFrame | None:
        if not self._seen:
            return None
        frame = SseFrame("\n".join(self._data), self._event, self._id, self._retry)
        self._data = []
        self._event = self._id = None
        self._retry = None
        self._seen = False
        return frame


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
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[JobEvent]:
    """Yield a job's events after ``last_event_id``, each once and in order, until ``end``.

    A dropped or failed connection is retried with ``base_delay·2ⁿ`` (±``jitter``, at most
    ``max_delay``) and resumed with ``Last-Event-ID``; only real events reset the schedule,
    so a plane that sends just pings or garbage still backs off. A clean close after real
    events reconnects after about ``base_delay`` (or the plane's ``retry:`` hint). 401,
    403, 410 and 426 raise at once, as does any 4xx but 404, 408 and 429.
    ``read_timeout`` must exceed the plane's ping interval (15 s). ``max_retries`` bounds
    consecutive failed connections without progress (default: retry for as long as it
    takes), then the last error is raised.

    Example::

        for event in follow_events(client, state, job.id):
            print(event.type)
    """
    last = last_event_id
    failures = 0
    while True:
        progressed = terminal = False
        try:
            with client.stream_events(
                scope, job_id, last_event_id=last, timeout=read_timeout
            ) as response:
                for frame in iter_frames(response.iter_text()):
                    if frame.retry is not None:
                        base_delay = min(frame.retry / 1000, max_delay)
                    if frame.event == "end":
                        return
                    event_id = _event_id(frame)
                    if event_id is None or (last is not None and event_id <= last):
                        continue
                    try:
                        event = _EVENT.validate_json(frame.data)
                    except ValidationError:
                        continue
                    last = event_id
                    progressed = True
                    terminal = event.type in TERMINAL_EVENT_TYPES
                    yield event
        except CloudApiError as error:
            if terminal:
                return
            failures = 0 if progressed else failures + 1
            if not _retryable(error.status) or (max_retries is not None and failures > max_retries):
                raise
        else:
            if terminal:
                return
            failures = 0 if progressed else failures + 1
        sleep(backoff_delay(max(failures - 1, 0), base=base_delay, cap=max_delay, jitter=jitter))


def _event_id(frame: SseFrame) -> int | None:
    """The frame's numeric id; pings and frames without one are not events."""
    if frame.event == "ping" or frame.id is None:
        return None
    try:
        return int(frame.id)
    except ValueError:
        return None


def _retryable(status: int | None) -> bool:
    """Connection failures (no status), 404, 408, 429 and 5xx are worth another try."""
    if status is None or status >= 500:
        return True
    return status in _RETRIED_STATUSES


__all__ = ["SseFrame", "SseParser", "backoff_delay", "follow_events", "iter_frames"]
