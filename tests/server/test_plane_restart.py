"""`arkor serve` killed mid-run and started again: the job resumes from its checkpoint, nothing lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.utils.plane import (
    Caller,
    sign_up,
    tiny_job,
    toy_dataset,
    upload,
    wait_for_status,
)

pytestmark = pytest.mark.slow


def start_serve(home: Path, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`arkor serve` on an ephemeral port, in its own process; returns it and its URL."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "arkor", "serve", "--port", "0"],
            env={**os.environ, "ARKOR_HOME": str(home), "ARKOR_LEASE_TTL_SECONDS": "2", **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(
            r"(http://127\.0\.0\.1:\d+)", log.read_text(encoding="utf-8", errors="replace")
        )
        if match:
            return process, match[1]
        time.sleep(0.1)
    raise AssertionError(
        f"arkor serve did not start: {log.read_text(encoding='utf-8', errors='replace')}"
    )


@pytest.fixture
def processes() -> Iterator[list[psutil.Process]]:
    """Everything the test started, killed at the end whatever happens."""
    started: list[psutil.Process] = []
    yield started
    for process in started:
        for child in [*process.children(recursive=True), process] if process.is_running() else []:
            child.kill()


def run_until_checkpoint(
    home: Path, log: Path, tiny_model: Path, processes: list[psutil.Process]
) -> tuple[subprocess.Popen[bytes], Caller, str, list[dict[str, Any]]]:
    """A 200-step job on a new `arkor serve`, followed until it saved its first checkpoint.

    Returns the plane's process, the caller, the job id and the events so far; the plane's
    workers are in ``processes``, so they are killed at the end whatever happens.
    """
    plane, url = start_serve(home, log)
    processes.append(psutil.Process(plane.pid))
    caller = sign_up(url)
    upload_id = upload(caller, toy_dataset())
    body = tiny_job(tiny_model, upload_id, maxSteps=200, saveSteps=10)
    job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
    deadline = time.monotonic() + 120
    while True:
        events = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
        if any(event["type"] == "checkpoint.saved" for event in events):
            break
        assert time.monotonic() < deadline, "the job never saved a checkpoint"
        time.sleep(0.05)
    processes.extend(psutil.Process(plane.pid).children(recursive=True))
    return plane, caller, job_id, events


def resume_on_a_new_plane(
    home: Path, log: Path, caller: Caller, job_id: str, processes: list[psutil.Process]
) -> tuple[subprocess.Popen[bytes], list[dict[str, Any]], int]:
    """Start a second `arkor serve` on ``home`` and let it finish the job.

    Returns the plane, the job's kept events, and the step the second run resumed from,
    checking that it trained on from there to the last step and completed.
    """
    plane, url = start_serve(home, log)
    processes.append(psutil.Process(plane.pid))
    caller.http = httpx.Client(base_url=url, headers=dict(caller.http.headers), timeout=30)
    caller.url = url
    wait_for_status(caller, job_id, {"completed", "failed"}, timeout=180)
    answer = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()
    assert answer["job"]["status"] == "completed", answer["job"].get("error")
    kept: list[dict[str, Any]] = answer["events"]
    starts = [i for i, event in enumerate(kept) if event["type"] == "training.started"]
    assert len(starts) == 2
    resumed_from: int = kept[starts[1]]["metadata"]["resumedFromStep"]
    steps = [e["step"] for e in kept[starts[1] :] if e["type"] == "training.log" and "loss" in e]
    assert steps[0] == resumed_from + 1 and steps[-1] == 200
    assert kept[-1]["type"] == "training.completed"
    return plane, kept, resumed_from


def checkpoints_before_the_resume(kept: list[dict[str, Any]]) -> list[int]:
    """The steps of the checkpoints the first run announced."""
    second_start = [i for i, event in enumerate(kept) if event["type"] == "training.started"][1]
    return [e["step"] for e in kept[:second_start] if e["type"] == "checkpoint.saved"]


def test_a_job_whose_plane_died_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_model: Path, processes: list[psutil.Process]
) -> None:
    home = tmp_path / "home"
    first, caller, job_id, events = run_until_checkpoint(
        home, tmp_path / "first.log", tiny_model, processes
    )
    workers = psutil.Process(first.pid).children(recursive=True)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    caller.close()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], "a worker outlived its plane (two runs would share one folder)"

    second, kept, resumed_from = resume_on_a_new_plane(
        home, tmp_path / "second.log", caller, job_id, processes
    )
    assert kept[: len(events)] == events, "the first run's events are kept as they were"
    assert resumed_from == checkpoints_before_the_resume(kept)[-1], "resumed from the newest"
    assert any(a["path"].startswith("adapter/") for a in kept[-1]["artifacts"])

    caller.close()
    second.send_signal(signal.SIGINT)
    assert second.wait(30) == 130, "Ctrl-C stops the plane cleanly with the interrupted exit code"
