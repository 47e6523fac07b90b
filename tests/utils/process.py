"""Read a child process's output on a thread, so a wait for a line keeps its deadline.

A loop over ``process.stdout`` checks a deadline only when a line arrives; a silent child
would hang it until pytest's own timeout. :class:`OutputLines` waits on a queue instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import IO


class OutputLines:
    """The lines of ``stream`` as they arrive, read by a daemon thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:  # closed at the end, so the pipe is not left to the garbage collector
            for line in stream:
                self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, wanted: Callable[[str], bool], timeout: float) -> str:
        """The first new line ``wanted`` accepts; AssertionError at the deadline or at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout} s; got {self.seen}") from None
            if line is None:
                raise AssertionError(f"the output ended without such a line; got {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line

    def rest(self, timeout: float) -> str:
        """Everything after the lines already seen, once the stream ends."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the output did not end within {timeout} s"
        tail: list[str] = []
        while (line := self._lines.get_nowait()) is not None:
            tail.append(line)
        self.seen.extend(tail)
        return "".join(tail)
