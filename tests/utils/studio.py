"""Studio under test: a template project on the tiny model, served over a real plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arkor.cli.main import run
from arkor.studio import token_path
from tests.utils.ports import free_port

LOOPBACK = "http://127.0.0.1:4000"


FAST_CONFIG = {
    "max_steps = 30": "max_steps = 6",
    "save_steps = 10": "save_steps = 3",
    "logging_steps = 5": "logging_steps = 1",
    "max_length = 512": "max_length = 128",
}


def template_project(project: Path, tiny_model: Path) -> Path:
    """`arkor init` (blank template) in ``project``, on the tiny model, with fast settings."""
    assert run(["init", "--yes", "--template", "blank", "--name", "demo"]) == 0
    config = project / "arkor.toml"
    text = config.read_text(encoding="utf-8")
    model_line = next(line for line in text.splitlines() if line.startswith("model ="))
    text = text.replace(model_line, f'model = "{tiny_model}"')
    for slow, fast in FAST_CONFIG.items():
        assert slow in text, slow
        text = text.replace(slow, fast)
    config.write_text(text, encoding="utf-8")
    return project


@contextmanager
def studio_for(root: Path) -> Iterator[Any]:
    """A :class:`~arkor.studio._studio.Studio` for ``root`` over an embedded plane."""
    from arkor.sdk import open_session
    from arkor.studio._studio import Studio

    session = open_session(cwd=root)
    studio = Studio(root, session)
    try:
        yield studio
    finally:
        studio.close()
        session.close()


def fastapi_app(app: Any) -> Any:
    """The FastAPI app inside Studio's guards (each guard keeps the next as ``.app``)."""
    from fastapi import FastAPI

    while not isinstance(app, FastAPI):
        app = app.app
    return app


@contextmanager
def arkor_dev(project: Path) -> Iterator[str]:
    """`arkor dev` as a user starts it, in ``project``; its URL once it says it is ready.

    Stopped with Ctrl-C (SIGINT) at the end, which must remove its token file.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "arkor", "dev", "--port", str(port)],
        cwd=project,
        env={**os.environ, "ARKOR_PORT": "0", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while "Press Ctrl-C" not in "".join(seen):
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"`arkor dev` did not start:\n{''.join(seen)}")
        seen.append(line)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
        assert not token_path().exists()
