"""The files telemetry keeps in the home: the install id, and the queue of unsent events.

Both are the owner's alone (0600) and written whole (a temporary file moved into place),
so a command killed mid-write never leaves half a file behind. The queue is changed only
under an ``fcntl.flock`` on ``telemetry-queue.lock``: commands drain it and their senders
put events back at the same time, and none of them may lose or duplicate an event.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arkor._home import PRIVATE_FILE_MODE, private_dir

ID_FILENAME = "telemetry-id"
QUEUE_FILENAME = "telemetry-queue.jsonl"
LOCK_FILENAME = "telemetry-queue.lock"
QUEUE_LIMIT = 1000
"""The most events the queue keeps; the oldest are dropped beyond it."""
LOCK_POLL_SECONDS = 0.005
COMMAND_LOCK_WAIT_SECONDS = 0.05
"""The longest a command waits for the queue's lock (held for a file's read and write)."""

Event = dict[str, Any]


def install_id(home: Path) -> tuple[str, bool]:
    """This install's random id and whether it was made just now (the first recording run).

    A file that holds no id (edited by hand, truncated) is replaced, quietly: it existed,
    so the first-run notice was shown already.
    """
    path = home / ID_FILENAME
    try:
        return str(uuid.UUID(path.read_text(encoding="utf-8").strip())), False
    except FileNotFoundError:
        pass
    except ValueError:
        fresh = str(uuid.uuid4())
        _write_private(path, fresh + "\n")
        return fresh, False
    private_dir(home)
    fresh = str(uuid.uuid4())
    temporary = _private_temporary(path, fresh + "\n")
    try:
        os.link(temporary, path)  # fails when another command made the id first
    except FileExistsError:
        return str(uuid.UUID(path.read_text(encoding="utf-8").strip())), False
    finally:
        temporary.unlink(missing_ok=True)
    return fresh, True


@contextmanager
def queue_lock(home: Path, wait: float | None = None) -> Iterator[None]:
    """Hold the queue's lock for the ``with`` block; ``wait`` bounds the wait for it.

    Raises :class:`TimeoutError` when another process holds it longer than ``wait``
    seconds (a command must not wait on a stuck one); ``None`` waits as long as it takes.
    """
    private_dir(home)
    descriptor = os.open(home / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        if wait is None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        else:
            give_up = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= give_up:
                        raise TimeoutError(
                            f"another arkor process holds {home / LOCK_FILENAME}"
                        ) from None
                    time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def read_queue(home: Path) -> list[Event]:
    """The queued events, oldest first; lines that are not events are skipped."""
    try:
        text = (home / QUEUE_FILENAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("uuid"), str):
            events.append(event)
    return events


def write_queue(home: Path, events: list[Event]) -> None:
    """Replace the queue with ``events`` (the newest :data:`QUEUE_LIMIT`); none removes it.

    Callers hold :func:`queue_lock`.
    """
    path = home / QUEUE_FILENAME
    kept = events[-QUEUE_LIMIT:]
    if not kept:
        path.unlink(missing_ok=True)
        return
    private_dir(home)
    _write_private(path, "".join(json.dumps(event, sort_keys=True) + "\n" for event in kept))


def drain_queue(home: Path, wait: float) -> list[Event]:
    """Take every queued event out of the queue (the caller now answers for them)."""
    with queue_lock(home, wait):
        events = read_queue(home)
        if events:
            write_queue(home, [])
        return events


def requeue(home: Path, events: list[Event], wait: float | None = None) -> None:
    """Put ``events`` (back) in the queue: once each, oldest first, capped."""
    with queue_lock(home, wait):
        queued = read_queue(home)
        present = {event["uuid"] for event in queued}
        merged = queued + [event for event in events if event["uuid"] not in present]
        merged.sort(key=lambda event: str(event.get("timestamp", "")))
        write_queue(home, merged)


def _write_private(path: Path, text: str) -> None:
    os.replace(_private_temporary(path, text), path)


def _private_temporary(path: Path, text: str) -> Path:
    """``text`` in a new 0600 file beside ``path``, named for this process."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return temporary
