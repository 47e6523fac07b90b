"""SIGTERM to `arkor serve` mid-run (systemd, `docker stop`, Kubernetes): nothing is lost.

The worker stops at the end of its step, the job goes back to the queue, the console says
so, and the next plane on the same home resumes it from its newest checkpoint.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.server.test_plane_restart import processes, start_serve
from tests.utils.plane import sign_up, tiny_job, toy_dataset, upload, wait_for_status

__all__ = ["processes"]

pytestmark = pytest.mark.slow


def test_sigterm_leaves_the_running_job_to_resume_from_its_checkpoint(
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
    first.send_signal(signal.SIGTERM)
    first.wait(60)
    caller.close()
    assert psutil.wait_procs(workers, timeout=10)[1] == [], "the plane waited for its worker"
    log = (tmp_path / "first.log").read_text(encoding="utf-8", errors="replace")
    assert "exited with code 75" in log, "the worker stopped at a step end, not killed"
    assert "1 running job will resume from its last checkpoint when a plane starts" in log

    second, url = start_serve(home, tmp_path / "second.log")
    processes.append(psutil.Process(second.pid))
    caller.http = httpx.Client(base_url=url, headers=dict(caller.http.headers), timeout=30)
    caller.url = url
    wait_for_status(caller, job_id, {"completed", "failed"}, timeout=180)
    answer = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()
    assert answer["job"]["status"] == "completed", answer["job"].get("error")
    kept = answer["events"]
    assert kept[: len(events)] == events, "the first run's events are kept as they were"
    assert "training.failed" not in [event["type"] for event in kept]

    starts = [i for i, event in enumerate(kept) if event["type"] == "training.started"]
    assert len(starts) == 2
    resumed_from = kept[starts[1]]["metadata"]["resumedFromStep"]
    saved = [e["step"] for e in kept[: starts[1]] if e["type"] == "checkpoint.saved"]
    # a checkpoint saved in the step the worker stopped at is on disk but never announced
    assert resumed_from >= saved[-1] and resumed_from % 10 == 0
    steps = [e["step"] for e in kept[starts[1] :] if e["type"] == "training.log" and "loss" in e]
    assert steps[0] == resumed_from + 1 and steps[-1] == 200
    assert kept[-1]["type"] == "training.completed"

    caller.close()
    second.send_signal(signal.SIGTERM)
    second.wait(30)
