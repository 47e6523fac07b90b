"""``arkor serve``: loopback by default, remote only when asked, clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from arkor.cli.serve import _is_loopback
from tests.utils.cli import CliRunner, run_process


def test_serve_runs_until_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "arkor", "serve", "--port", "0"],
        env={**os.environ, "ARKOR_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Arkor control plane on http://127.0.0.1:")
        url = first.split()[-1]
        for _ in range(100):  # the banner comes just before the app starts
            try:
                answer = httpx.get(f"{url}/v1/auth/cli/config", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert answer.json()["anonymous"] is True
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode in (0, 130)
    assert "Traceback" not in output
    assert (tmp_path / "home" / "local" / "arkor.db").is_file()


def test_a_non_loopback_host_needs_allow_remote(cli: CliRunner) -> None:
    result = cli("serve", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "--allow-remote" in result.stderr


def test_loopback_addresses() -> None:
    assert all(map(_is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]))
    assert not any(map(_is_loopback, ["0.0.0.0", "192.168.1.4", "example.com", "::"]))


def test_a_database_from_a_newer_arkor_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "local").mkdir(parents=True)
    with sqlite3.connect(home / "local" / "arkor.db") as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    result = run_process("serve", "--port", "0", env={"ARKOR_HOME": str(home)})
    assert result.exit_code == 1
    assert "written by a newer version of Arkor" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
