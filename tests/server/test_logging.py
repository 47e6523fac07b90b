"""`arkor serve`'s log tells a job's story at INFO; workers' routine calls go to DEBUG."""

from __future__ import annotations

import re
import shlex
import signal
import time
from pathlib import Path

import psutil

from tests.server.conftest import FAKE_WORKER
from tests.server.test_jobs import create
from tests.server.test_plane_restart import processes, start_serve
from tests.utils.plane import sign_up, wait_for_status

__all__ = ["processes"]

INTERNAL = re.compile(r"/v1/internal/jobs/\S+")


def run_a_job(tmp_path: Path, processes: list[psutil.Process], **env: str) -> tuple[str, str]:
    """Serve, run a job whose worker beats its heartbeat about 20 times a second for a
    while, stop the plane; return the job id and the plane's log."""
    log = tmp_path / "serve.log"
    serve, url = start_serve(
        tmp_path / "home", log, ARKOR_WORKER_COMMAND=shlex.join(FAKE_WORKER), **env
    )
    processes.append(psutil.Process(serve.pid))
    caller = sign_up(url)
    job = create(caller, "until-cancel")
    wait_for_status(caller, job["id"], {"running"})
    while not caller.http.get(f"/v1/jobs/{job['id']}", params=caller.scope).json()["events"]:
        time.sleep(0.05)
    time.sleep(1)  # about 20 heartbeats
    caller.http.post(f"/v1/jobs/{job['id']}/cancel", params=caller.scope)
    wait_for_status(caller, job["id"], {"cancelled"})
    caller.close()
    serve.send_signal(signal.SIGINT)
    serve.wait(30)
    return job["id"], log.read_text(encoding="utf-8", errors="replace")


def test_worker_calls_stay_out_of_the_log_at_info(
    tmp_path: Path, processes: list[psutil.Process]
) -> None:
    job_id, log = run_a_job(tmp_path, processes)
    assert not INTERNAL.findall(log), "heartbeats, polls and event posts are DEBUG lines"
    assert f"Job {job_id} started in worker process" in log
    assert re.search(rf"Job {job_id}: worker process \d+ exited with code", log)
    assert "POST /v1/jobs" in log, "clients' requests still show"


def test_arkor_debug_shows_worker_calls_as_debug_lines(
    tmp_path: Path, processes: list[psutil.Process]
) -> None:
    _, log = run_a_job(tmp_path, processes, ARKOR_DEBUG="1")
    lines = [line for line in log.splitlines() if INTERNAL.search(line)]
    assert any("/heartbeat" in line for line in lines)
    assert all(line.startswith("DEBUG") for line in lines), lines[:3]
