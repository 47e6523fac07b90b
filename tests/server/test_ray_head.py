"""The Ray test harness itself: a real head on loopback runs a job in this venv and leaves
nothing behind, so the Ray executor's tests can trust what it gives them."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.utils.ray_head import RayHead, alive, ray_head

pytestmark = pytest.mark.ray

JOB_TIMEOUT = 120.0
PROMPT_STOP = 20.0
"""Seconds a head may take to stop: about 3 on two busy cores, 30+ when SIGTERM is ignored."""


def _wait_status(head: RayHead, job_id: str, wanted: set[str]) -> str:
    """The job's status once it is one of ``wanted`` (or terminal); fails at the deadline."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard_url)
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in wanted or status.is_terminal():
            return str(status)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not {wanted} within {JOB_TIMEOUT} s:\n{head.log_tail()}")


def _listening(ports: set[int]) -> set[int]:
    """Which of ``ports`` some process on this machine listens on."""
    listening = {
        conn.laddr.port
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr
    }
    return listening & ports


def test_a_head_on_loopback_runs_a_job_with_this_venv_and_leaves_nothing(tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    with ray_head(tmp_path) as head:
        client = JobSubmissionClient(head.dashboard_url)
        job = client.submit_job(entrypoint='python -c "import sys; print(sys.executable)"')
        assert _wait_status(head, job, {"SUCCEEDED"}) == "SUCCEEDED", client.get_job_logs(job)
        assert sys.executable in client.get_job_logs(job).splitlines()

        listeners = head.listeners()
        assert head.ports["dashboard"] in {port for _, _, port in listeners}
        assert head.ports["gcs"] in {port for _, _, port in listeners}
        assert {ip for _, ip, _ in listeners} == {"127.0.0.1"}, listeners
        assert head.remote_peers() == []

        # a job still running when the head stops must go with it
        sleeper = client.submit_job(entrypoint='python -c "import time; time.sleep(600)"')
        assert _wait_status(head, sleeper, {"RUNNING"}) == "RUNNING"
        processes = _processes(head.pids())
        assert any("time.sleep(600)" in " ".join(_cmdline(p)) for p in processes)
        ports = set(head.ports.values())

    assert [p for p in processes if alive(p)] == []
    assert _listening(ports) == set()


def _processes(pids: set[int]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append(psutil.Process(pid))
    return found


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def test_a_head_stopped_just_after_it_answers_stops_promptly(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The dashboard answers before `ray start` has finished starting; a head stopped a moment
    # later (half a second or so) ignored SIGTERM for 30 s. Ready must mean startup is done.
    with ray_head(tmp_path_factory.mktemp("ray")) as head:
        processes = _processes(head.pids())
        time.sleep(0.5)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < PROMPT_STOP
    assert [p for p in processes if alive(p)] == []
