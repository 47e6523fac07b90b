"""Telemetry on, and a loopback PostHog stand-in that records what it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.utils.loopback import QuietHandler, serving


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


@pytest.fixture
def telemetry_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's default (telemetry off)."""
    monkeypatch.delenv("ARKOR_TELEMETRY_DISABLED")


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
