"""Fanning a job's events out to its followers, and writing SSE frames by hand.

The writer never waits for followers. After an event commits, the route hands its frame
to :meth:`EventHub.publish`, which appends it to the job's in-memory feed and fires the
feed's signal: one cheap call on the event loop, however many follow. Each follower then
takes, on its own time, every frame it has not sent yet from the feed, so a follower
woken late sends many events in one write, and no follower reads the database per event.
The database stays the source of truth: a follower reads it for what the feed does not
hold (the replay before it joined, frames trimmed from a long feed, events another plane
stored) and whenever the feed cannot vouch it is complete.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

FEED_FRAMES = 4096
"""The most recent frames a job's feed keeps; a follower further behind reads the database."""


class FrameBatch(NamedTuple):
    """Consecutive stored events, as the text of their SSE frames."""

    text: str
    last_id: int
    terminal: bool
    """Whether the last of them ended the job (nothing is stored after that)."""


@dataclass
class Feed:
    """The frames of one job published since its first follower came, while any follows.

    ``frames[i]`` is event ``first + i``; the frames are consecutive, so a follower
    standing at an id inside the feed misses nothing by reading only the feed.
    """

    followers: int = 0
    first: int = 0
    frames: list[str] = field(default_factory=list)
    terminal_id: int = 0
    signal: asyncio.Event = field(default_factory=asyncio.Event)

    def read(self, after: int) -> FrameBatch | None:
        """The frames after event ``after`` (text "" when there are none yet), or None.

        None: the feed can't say, because ``after`` lies before what it holds, or it holds
        nothing; read the database.
        """
        end = self.first + len(self.frames)
        if not self.frames or not self.first - 1 <= after < end:
            return None
        last = end - 1
        text = "".join(self.frames[after + 1 - self.first :])
        return FrameBatch(text, last, last == self.terminal_id)

    def add(self, event_id: int, frame: str | None, terminal: bool) -> None:
        """Append the event that was just stored, or forget everything when the feed would skip.

        A frame out of sequence (another writer stored events in between, or two commits
        were announced out of order) or no frame at all (a change announced without one)
        leaves the feed empty, so followers read the database until the next event.
        """
        if frame is not None and (not self.frames or event_id == self.first + len(self.frames)):
            if not self.frames:
                self.first = event_id
            self.frames.append(frame)
            if len(self.frames) > FEED_FRAMES:
                dropped = len(self.frames) - FEED_FRAMES // 2
                del self.frames[:dropped]
                self.first += dropped
        else:
            self.frames.clear()
        if terminal:
            self.terminal_id = event_id
        signal, self.signal = self.signal, asyncio.Event()
        signal.set()


class EventHub:
    """One feed per job with followers; any thread may :meth:`publish` or :meth:`notify`."""

    def __init__(self) -> None:
        self._feeds: dict[str, Feed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the plane's event loop (at startup)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @contextmanager
    def follow(self, job_id: str) -> Iterator[Feed]:
        """The job's feed, kept while the block runs; use on the loop."""
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = Feed()
        feed.followers += 1
        try:
            yield feed
        finally:
            feed.followers -= 1
            if feed.followers == 0:
                del self._feeds[job_id]

    def publish(self, job_id: str, event_id: int, frame: str, terminal: bool) -> None:
        """Hand followers of ``job_id`` the event just stored as ``event_id``."""
        self._call(job_id, event_id, frame, terminal)

    def notify(self, job_id: str) -> None:
        """Wake every follower of ``job_id`` to read the database: its events changed."""
        self._call(job_id, 0, None, False)

    def _call(self, job_id: str, event_id: int, frame: str | None, terminal: bool) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._add(job_id, event_id, frame, terminal)
        else:
            self._loop.call_soon_threadsafe(self._add, job_id, event_id, frame, terminal)

    def _add(self, job_id: str, event_id: int, frame: str | None, terminal: bool) -> None:
        feed = self._feeds.get(job_id)
        if feed is not None:
            feed.add(event_id, frame, terminal)


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
