"""Owner leases: a job left running by a dead plane resumes from its checkpoint or ends with
the reason; a live plane's job is left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from arkor.server import _store as store
from arkor.server._db import Database
from tests.server.conftest import FAKE_WORKER
from tests.server.test_jobs import create, event_types
from tests.utils.plane import Caller, running_plane, sign_up, wait_for_status

LONG_AGO = time.time() - 3600


def orphan(
    db: Database,
    job_id: str,
    *,
    owner: str = "plane_dead",
    checkpoint: bool = False,
    resumes: int = 0,
    cancel: bool = False,
) -> None:
    """Make a job that ran look as if it were still running when its plane died.

    Its events are cut back to ``training.started`` (plus a checkpoint if asked).
    """
    with db.transaction() as connection:
        connection.execute("DELETE FROM events WHERE job_id = ? AND id > 1", (job_id,))
        connection.execute(
            "UPDATE jobs SET status = 'running', owner = ?, lease_at = ?, last_event = 1, "
            "completed_at = NULL, resumes = ?, worker_seq = 7, cancel_requested_at = ? "
            "WHERE id = ?",
            (owner, LONG_AGO, resumes, LONG_AGO if cancel else None, job_id),
        )
    if checkpoint:
        store.append_event(
            db=db,
            job_id=job_id,
            data={"type": "checkpoint.saved", "step": 5, "artifacts": []},
        )


def finished_jobs(plane_home: Path, names: list[str]) -> tuple[Caller, list[dict[str, Any]]]:
    """Jobs of the fake worker, run to completion on a plane that then stops."""
    with running_plane(plane_home, worker_command=FAKE_WORKER, max_jobs=len(names)) as plane:
        caller = sign_up(plane.url)
        jobs = [create(caller, name) for name in names]
        for job in jobs:
            wait_for_status(caller, job["id"], {"completed"})
    return caller, jobs


def wait_for_lease_checks(home: Path, count: int, timeout: float = 30) -> None:
    """Wait until the running plane has beaten ``count`` more times (each beat checks for orphans).

    The dead and live planes this module inserts by hand never beat.
    """
    db = Database(home / "local" / "arkor.db")

    def beat() -> float:
        with db.transaction() as connection:
            row = connection.execute(
                "SELECT MAX(heartbeat_at) FROM planes WHERE id NOT IN ('plane_dead', 'plane_live')"
            ).fetchone()
        return float(row[0])

    deadline = time.monotonic() + timeout
    try:
        seen = [beat()]
        while len(seen) <= count:
            assert time.monotonic() < deadline, f"the plane beat {len(seen) - 1} time(s)"
            time.sleep(0.05)
            if (now := beat()) != seen[-1]:
                seen.append(now)
    finally:
        db.close()


def started_metadata(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    events = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
    return [event.get("metadata") for event in events if event["type"] == "training.started"]


def test_orphans_resume_from_a_checkpoint_or_end_with_the_reason(plane_home: Path) -> None:
    caller, (resumable, fresh, exhausted, cancelling, other) = finished_jobs(
        plane_home, ["events:0"] * 5
    )

    # As if a plane died mid-run, while another plane is running `other` right now.
    db = Database(plane_home / "local" / "arkor.db")
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO planes (id, pid, url, started_at, heartbeat_at) VALUES "
            "('plane_dead', 1, 'http://127.0.0.1:1', 'then', ?), "
            "('plane_live', 2, 'http://127.0.0.1:2', 'now', ?)",
            (LONG_AGO, time.time() + 3600),
        )
    orphan(db, resumable["id"], checkpoint=True)
    orphan(db, fresh["id"])
    orphan(db, exhausted["id"], checkpoint=True, resumes=2)
    orphan(db, cancelling["id"], checkpoint=True, cancel=True)
    orphan(db, other["id"], owner="plane_live")
    db.close()

    with running_plane(
        plane_home, worker_command=FAKE_WORKER, lease_ttl=1.0, max_resumes=2, max_jobs=5
    ) as plane:
        caller.http.base_url = plane.url

        resumed = wait_for_status(caller, resumable["id"], {"completed"})
        assert resumed["status"] == "completed"
        assert event_types(caller, resumable["id"]) == [
            "training.started",
            "checkpoint.saved",
            "training.started",
            "training.completed",
        ], "the first run's events stay; the resumed run's follow, numbered from 1 again"
        assert started_metadata(caller, resumable["id"])[-1] == {"resume": True}

        failed = wait_for_status(caller, fresh["id"], {"failed"}, timeout=0)
        assert "before its first checkpoint" in failed["error"]
        assert event_types(caller, fresh["id"]) == ["training.started", "training.failed"]

        failed = wait_for_status(caller, exhausted["id"], {"failed"}, timeout=0)
        assert "2 time(s), the most allowed (ARKOR_MAX_RESUMES)" in failed["error"]

        wait_for_status(caller, cancelling["id"], {"cancelled"}, timeout=0)

        wait_for_lease_checks(plane_home, 2)
        assert wait_for_status(caller, other["id"], {"running"}, timeout=0)
    caller.close()
