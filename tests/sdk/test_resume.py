"""A plane killed while the SDK waits: the job resumes on the next plane, and ``on_started`` fires again."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from arkor.sdk import CheckpointContext, create_trainer
from tests.utils.plane import QUESTIONS

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_serve(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`arkor serve` on ``port``, in its own process, once it answers."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "arkor", "serve", "--port", str(port)],
            env={**os.environ, "ARKOR_HOME": str(home), "ARKOR_LEASE_TTL_SECONDS": "2"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while process.poll() is None:
        text = log.read_text(encoding="utf-8", errors="replace")
        if re.search(rf"http://127\.0\.0\.1:{port}\b", text):
            return process
        assert time.monotonic() < deadline, f"arkor serve did not start: {text}"
        time.sleep(0.1)
    raise AssertionError(f"arkor serve exited: {log.read_text(encoding='utf-8')}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The planes the test started, and their workers, killed at the end whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
        process.wait(30)


def test_on_started_fires_again_with_the_step_the_run_resumed_from(
    tiny_model: Path,
    project: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QUESTIONS.items()
    ] * 3
    (project / "data.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
    )
    home, port = tmp_path / "plane-home", free_port()
    processes.append(start_serve(home, port, tmp_path / "first.log"))
    seen: list[tuple[str, Any]] = []

    def on_checkpoint(ctx: CheckpointContext) -> None:
        seen.append(("checkpoint", ctx.step))
        if len(processes) == 1:  # the first checkpoint: the plane dies, another takes over
            workers = psutil.Process(processes[0].pid).children(recursive=True)
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(10)
            psutil.wait_procs(workers, timeout=30)
            processes.append(start_serve(home, port, tmp_path / "second.log"))

    trainer = create_trainer(
        name="resumed",
        model=str(tiny_model),
        dataset={"type": "file", "path": "data.jsonl"},
        max_steps=8,
        save_steps=3,
        logging_steps=1,
        batch_size=4,
        lora={"r": 4, "alpha": 8, "max_length": 64},
        callbacks={
            "on_started": lambda ctx: seen.append(("started", dict(ctx.metadata))),
            "on_log": lambda ctx: seen.append(("log", ctx.step)),
            "on_checkpoint": on_checkpoint,
        },
        cloud_url=f"http://127.0.0.1:{port}",
    )
    try:
        result = trainer.wait()
    finally:
        trainer.close()

    assert result.status == "completed", result.error
    assert len(processes) == 2, "the first plane was killed and a second one took over"
    first, again = (i for i, (kind, _) in enumerate(seen) if kind == "started")
    assert "resumedFromStep" not in seen[first][1]
    checkpoints = [step for kind, step in seen[:again] if kind == "checkpoint"]
    assert seen[again][1]["resumedFromStep"] == checkpoints[-1], "from the newest checkpoint"
    resumed_logs = [step for kind, step in seen[again:] if kind == "log"]
    assert resumed_logs == list(range(checkpoints[-1] + 1, 9))
