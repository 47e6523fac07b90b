"""SIGTERM to `arkor serve` mid-run (systemd, `docker stop`, Kubernetes): nothing is lost.

The worker stops at the end of its step, the job goes back to the queue, the console says
so, and the next plane on the same home resumes it from its newest checkpoint.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.server.test_plane_restart import (
    checkpoints_before_the_resume,
    processes,
    resume_on_a_new_plane,
    run_until_checkpoint,
)

__all__ = ["processes"]

pytestmark = pytest.mark.slow


def test_sigterm_leaves_the_running_job_to_resume_from_its_checkpoint(
    tmp_path: Path, tiny_model: Path, processes: list[psutil.Process]
) -> None:
    home = tmp_path / "home"
    first, caller, job_id, events = run_until_checkpoint(
        home, tmp_path / "first.log", tiny_model, processes
    )
    workers = psutil.Process(first.pid).children(recursive=True)
    first.send_signal(signal.SIGTERM)
    first.wait(60)
    caller.close()
    assert psutil.wait_procs(workers, timeout=10)[1] == [], "the plane waited for its worker"
    log = (tmp_path / "first.log").read_text(encoding="utf-8", errors="replace")
    assert "exited with code 75" in log, "the worker stopped at a step end, not killed"
    assert "1 running job will resume from its last checkpoint when a plane starts" in log

    second, kept, resumed_from = resume_on_a_new_plane(
        home, tmp_path / "second.log", caller, job_id, processes
    )
    assert kept[: len(events)] == events, "the first run's events are kept as they were"
    assert "training.failed" not in [event["type"] for event in kept]
    # a checkpoint saved in the step the worker stopped at is on disk but never announced
    assert resumed_from >= checkpoints_before_the_resume(kept)[-1] and resumed_from % 10 == 0

    caller.close()
    second.send_signal(signal.SIGTERM)
    second.wait(30)
