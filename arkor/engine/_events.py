"""Where the engine's events go: one small protocol, flushed per event."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Protocol

from arkor.cloud import JobEvent


class EventSink(Protocol):
    """Receives a job's events in order. ``emit`` must not lose an event it returned from."""

    def emit(self, event: JobEvent) -> None: ...


class ListSink:
    """Keeps events in memory, for tests and in-process callers."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: JobEvent) -> None:
        with self._lock:
            self.events.append(event)

    def types(self) -> list[str]:
        """The event types received so far, in order."""
        return [event.type for event in self.events]


class JsonlSink:
    """Appends each event as one JSON line and flushes it, so a crash loses nothing emitted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, event: JobEvent) -> None:
        line = json.dumps(event.to_wire(), ensure_ascii=False)
        with self._lock:
            self._handle.write(line + "\n")
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()
