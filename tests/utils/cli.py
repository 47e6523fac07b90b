"""Run the real ``arkor`` entry point, in-process or as a subprocess, and capture its output."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from arkor.cli.main import run


@dataclass(frozen=True)
class Result:
    """The outcome of one ``arkor`` invocation."""

    exit_code: int
    stdout: str
    stderr: str


class CliRunner:
    """Calls :func:`arkor.cli.main.run`, the function the console script calls."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *args: str) -> Result:
        self._capsys.readouterr()
        code = run(list(args))
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)


def run_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m arkor ARGS`` as a separate process (for import and exit-code checks)."""
    completed = subprocess.run(
        [sys.executable, "-m", "arkor", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)
