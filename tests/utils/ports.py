"""Loopback ports for tests that must not meet whatever else listens on this machine."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    """A loopback port nothing listens on right now (the system's pick, released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def unused_arkor_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """``ARKOR_PORT`` names a port no ``arkor serve`` listens on, so a command run without a
    configured plane embeds one, whatever answers on the default port 8765."""
    port = free_port()
    monkeypatch.setenv("ARKOR_PORT", str(port))
    return port
