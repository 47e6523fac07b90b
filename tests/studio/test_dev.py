"""`arkor dev`: the launch token's file, the port it takes, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from arkor.studio import FALLBACK_PORTS, PortTaken, StudioTokenFile, bind_studio, token_path
from tests.utils.ports import free_port
from tests.utils.requires import need
from tests.utils.studio import template_project

need("fastapi", "Studio is a FastAPI app")


@contextmanager
def holding(port: int) -> Iterator[bool]:
    """Listen on loopback ``port`` for the block; False when something else already does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        yield False
        return
    sock.listen(1)
    try:
        yield True
    finally:
        sock.close()


def test_the_token_file_is_owner_only_while_it_lives_and_gone_after(project: Path) -> None:
    with StudioTokenFile() as launch:
        path = token_path()
        assert launch.path == path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text(encoding="utf-8").strip() == launch.token
        assert len(launch.token) >= 40
    assert not path.exists()
    assert StudioTokenFile().token != launch.token


def test_a_newer_launchs_token_file_is_left_alone(project: Path) -> None:
    older = StudioTokenFile()
    with older:
        with StudioTokenFile() as newer:
            pass
        assert not token_path().exists()
        newer.__enter__()
    assert token_path().read_text(encoding="utf-8").strip() == newer.token
    newer.remove()


def test_a_free_port_is_taken_as_given_and_a_taken_one_is_refused() -> None:
    port = free_port()
    sock = bind_studio(port)
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        with pytest.raises(PortTaken, match=rf"Port {port} is taken.*--port"):
            bind_studio(port)
    finally:
        sock.close()


def test_without_a_port_studio_falls_back_through_4009() -> None:
    with ExitStack() as stack:
        held = [port for port in FALLBACK_PORTS[:3] if stack.enter_context(holding(port))]
        sock = bind_studio()
        try:
            port = sock.getsockname()[1]
            assert port in FALLBACK_PORTS
            assert port not in held
            assert port > FALLBACK_PORTS[2] or not held
        finally:
            sock.close()
        for port in FALLBACK_PORTS:
            stack.enter_context(holding(port))
        with pytest.raises(PortTaken, match="4000-4009 are all taken"):
            bind_studio()


def _launch(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ARKOR_PORT": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "arkor", "dev", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_url(process: subprocess.Popen[str], lines: list[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    url = None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Arkor Studio on "):
            url = line.split()[-1]
        if "Press Ctrl-C" in line and url is not None:
            return url
    raise AssertionError(f"`arkor dev` did not start:\n{''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_arkor_dev_serves_then_stops_cleanly_and_removes_its_token(
    project: Path, tiny_model: Path, stop: signal.Signals
) -> None:
    template_project(project, tiny_model)
    with holding(FALLBACK_PORTS[0]):
        process = _launch(project)
        lines: list[str] = []
        try:
            url = _wait_for_url(process, lines)
            output = "".join(lines)
            assert url.startswith("http://127.0.0.1:40"), output
            assert int(url.rsplit(":", 1)[1]) != FALLBACK_PORTS[0]
            assert f"Port {FALLBACK_PORTS[0]} is taken: using" in output
            assert "embedded local plane" in output
            token = token_path().read_text(encoding="utf-8").strip()
            assert stat.S_IMODE(token_path().stat().st_mode) == 0o600
            page = httpx.get(url)
            assert token in page.text
            api = httpx.get(f"{url}/api/project", headers={"X-Arkor-Studio-Token": token})
            assert api.status_code == 200
            assert api.json()["name"] == project.name
            assert httpx.get(f"{url}/api/project").status_code == 401
        finally:
            process.send_signal(stop)
            rest, _ = process.communicate(timeout=60)
    expected = 128 + stop  # 130 for Ctrl-C, 143 for SIGTERM
    assert process.returncode == expected, "".join(lines) + rest
    assert not token_path().exists()
    assert "Traceback" not in rest


def test_arkor_dev_with_a_taken_port_fails_in_one_paragraph(project: Path) -> None:
    port = free_port()
    with holding(port):
        result = subprocess.run(
            [sys.executable, "-m", "arkor", "dev", "--port", str(port)],
            cwd=project,
            env={**os.environ, "ARKOR_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"Port {port} is taken" in result.stderr
    assert "Traceback" not in result.stderr
    assert not token_path().exists()
