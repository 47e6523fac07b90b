"""Owner leases: a job left running by a dead plane fails; a live plane's job is left alone."""

from __future__ import annotations

import time
from pathlib import Path

from arkor.server._db import Database
from tests.server.conftest import FAKE_WORKER
from tests.server.test_jobs import create, event_types
from tests.utils.plane import running_plane, sign_up, wait_for_status


def test_orphaned_jobs_fail_and_a_live_planes_jobs_stay(plane_home: Path) -> None:
    with running_plane(plane_home, worker_command=FAKE_WORKER) as plane:
        caller = sign_up(plane.url)
        orphan = create(caller, "events:0")
        other = create(caller, "events:0")
        wait_for_status(caller, other["id"], {"completed"})
        wait_for_status(caller, orphan["id"], {"completed"})

    # As if a plane died mid-run (orphan), and another plane is running `other` right now.
    long_ago, now = time.time() - 3600, time.time()
    db = Database(plane_home / "local" / "arkor.db")
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO planes (id, pid, url, started_at, heartbeat_at) VALUES "
            "('plane_dead', 1, 'http://127.0.0.1:1', 'then', ?), "
            "('plane_live', 2, 'http://127.0.0.1:2', 'now', ?)",
            (long_ago, now + 3600),
        )
        for job_id, owner in ((orphan["id"], "plane_dead"), (other["id"], "plane_live")):
            connection.execute("DELETE FROM events WHERE job_id = ? AND id > 1", (job_id,))
            connection.execute(
                "UPDATE jobs SET status = 'running', owner = ?, lease_at = ?, last_event = 1, "
                "completed_at = NULL WHERE id = ?",
                (owner, long_ago, job_id),
            )
    db.close()

    with running_plane(plane_home, worker_command=FAKE_WORKER, lease_ttl=1.0) as plane:
        caller.http.base_url = plane.url
        failed = wait_for_status(caller, orphan["id"], {"failed"}, timeout=0)
        assert "control plane stopped while this job was running" in failed["error"]
        assert event_types(caller, orphan["id"]) == ["training.started", "training.failed"]
        time.sleep(1.5)  # past a lease period and a few scheduler ticks
        assert wait_for_status(caller, other["id"], {"running"}, timeout=0)
    caller.close()
