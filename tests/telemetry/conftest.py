"""Telemetry on, a loopback PostHog stand-in that records what it is sent, and waits.

Events are sent by a detached process after the command returns, so a test waits (bounded)
for what it expects to arrive, at the stand-in or back in the queue.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from arkor._home import arkor_home
from arkor.telemetry import _send
from tests.utils.loopback import QuietHandler, serving

WAIT_SECONDS = 30.0
"""The longest a test waits for a sender (a Python start and a posthog import, on a busy CI)."""
QUEUE_FILE = "telemetry-queue.jsonl"


def wait_until(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    """Return once ``condition()`` holds; fail the test after ``seconds``."""
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"waited {seconds:g} s for {what}")
        time.sleep(0.02)


def queued() -> list[dict[str, Any]]:
    """The events in this test's queue, oldest first."""
    path = arkor_home() / QUEUE_FILE
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


@dataclass
class Capture:
    """What a loopback capture server received: each request's path and raw body."""

    url: str
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def raw(self) -> bytes:
        return b"".join(body for _, body in self.requests)

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in order, from PostHog batch bodies."""
        found: list[dict[str, Any]] = []
        for _, body in self.requests:
            found.extend(json.loads(body)["batch"])
        return found

    def received(self, count: int) -> list[dict[str, Any]]:
        """The events received once there are at least ``count`` (waiting for the senders)."""
        wait_until(lambda: len(self.events()) >= count, f"{count} event(s) at {self.url}")
        return self.events()


@contextmanager
def capture_server(hang: bool = False) -> Iterator[Capture]:
    capture = Capture(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            capture.requests.append((self.path, body))
            if hang:
                capture.holding.set()
                capture.release.wait(30)
            answer = b'{"status": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serving(Handler) as url:
        capture.url = url
        try:
            yield capture
        finally:
            capture.release.set()


@pytest.fixture(autouse=True)
def senders_end_with_their_test() -> Iterator[None]:
    """Wait for the senders a test started, so none writes into a later test's files."""
    yield
    for child in _send._children:
        child.wait(WAIT_SECONDS)


@pytest.fixture
def telemetry_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's default (telemetry off); senders try for 10 s whatever this shell says."""
    monkeypatch.delenv("ARKOR_TELEMETRY_DISABLED")
    monkeypatch.setenv("ARKOR_TELEMETRY_TIMEOUT", "10")


@pytest.fixture
def posthog(telemetry_on: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """A PostHog instance on loopback that answers at once; the CLI sends there directly."""
    with capture_server() as capture:
        monkeypatch.setenv("ARKOR_TELEMETRY_HOST", capture.url)
        monkeypatch.setenv("ARKOR_TELEMETRY_KEY", "phc_test")
        yield capture


@pytest.fixture
def hanging_posthog(telemetry_on: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """A PostHog instance on loopback that holds every request until the test releases it."""
    with capture_server(hang=True) as capture:
        monkeypatch.setenv("ARKOR_TELEMETRY_HOST", capture.url)
        monkeypatch.setenv("ARKOR_TELEMETRY_KEY", "phc_test")
        yield capture
