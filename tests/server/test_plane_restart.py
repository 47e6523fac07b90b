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

import httpx
import psutil
import pytest

from tests.utils.plane import sign_up, tiny_job, toy_dataset, upload, wait_for_status

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


def test_a_job_whose_plane_died_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_model: Path, processes: list[psutil.Process]
) -> None:
    home = tmp_path / "home"
    first, url = start_serve(home, tmp_path / "first.log")
    processes.append(psutil.Process(first.pid))
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
    workers = psutil.Process(first.pid).children(recursive=True)
    processes.extend(workers)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    caller.close()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], "a worker outlived its plane (two runs would share one folder)"

    second, url = start_serve(home, tmp_path / "second.log")
    processes.append(psutil.Process(second.pid))
    caller.http = httpx.Client(base_url=url, headers=dict(caller.http.headers), timeout=30)
    caller.url = url
    wait_for_status(caller, job_id, {"completed", "failed"}, timeout=180)
    answer = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()
    assert answer["job"]["status"] == "completed", answer["job"].get("error")
    kept = answer["events"]
    assert kept[: len(events)] == events, "the first run's events are kept as they were"

    starts = [i for i, event in enumerate(kept) if event["type"] == "training.started"]
    assert len(starts) == 2
    resumed_from = kept[starts[1]]["metadata"]["resumedFromStep"]
    saved = [e["step"] for e in kept[: starts[1]] if e["type"] == "checkpoint.saved"]
    assert resumed_from == saved[-1], "the run resumed from the newest checkpoint"
    steps = [e["step"] for e in kept[starts[1] :] if e["type"] == "training.log" and "loss" in e]
    assert steps[0] == resumed_from + 1 and steps[-1] == 200
    final = kept[-1]
    assert final["type"] == "training.completed"
    assert any(a["path"].startswith("adapter/") for a in final["artifacts"])

    caller.close()
    second.send_signal(signal.SIGINT)
    assert second.wait(30) == 130, "Ctrl-C stops the plane cleanly with the interrupted exit code"
