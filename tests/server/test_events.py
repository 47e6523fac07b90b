"""The event stream: replay after Last-Event-ID, live follow, pings, end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from arkor.server import RunningPlane
from arkor.server import _store as store
from arkor.server._db import Database
from tests.server.test_jobs import create, event_types
from tests.utils.plane import Caller, Frame, sse_frames, wait_for_status


@contextmanager
def stream(caller: Caller, job_id: str, last_id: str | None = None) -> Iterator[Iterator[Frame]]:
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    with caller.http.stream(
        "GET", f"/v1/jobs/{job_id}/events/stream", params=caller.scope, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield sse_frames(response.iter_lines())


def test_replay_after_last_event_id_then_end(caller: Caller) -> None:
    job = create(caller, "events:5")
    wait_for_status(caller, job["id"], {"completed"})
    with stream(caller, job["id"]) as frames:
        every = list(frames)
    assert [f.id for f in every] == ["1", "2", "3", "4", "5", "6", "7", None]
    assert every[0].event == "training.started"
    assert every[-2].event == "training.completed" and every[-1].event == "end"
    log = every[1].json()
    assert log == {**log, "type": "training.log", "jobId": job["id"], "step": 1, "loss": 1.0}
    assert log["timestamp"].endswith("Z")

    with stream(caller, job["id"], last_id="3") as frames:
        assert [f.id for f in frames] == ["4", "5", "6", "7", None]
    with stream(caller, job["id"], last_id="7") as frames:
        assert [f.event for f in frames] == ["end"]


def test_live_follow_with_pings_until_the_end(caller: Caller) -> None:
    job = create(caller, "until-cancel")
    seen: list[Frame] = []
    with stream(caller, job["id"]) as frames:  # opened while the job is still queued
        for frame in frames:
            seen.append(frame)
            if frame.event == "ping" and any(f.event == "training.started" for f in seen):
                caller.http.post(f"/v1/jobs/{job['id']}/cancel", params=caller.scope)
    events = [f.event for f in seen if f.event != "ping"]
    assert events == ["training.started", "training.cancelled", "end"]
    assert all(f.id is None for f in seen if f.event == "ping")


def test_a_bad_last_event_id_is_400(caller: Caller) -> None:
    job = create(caller, "events:0")
    answer = caller.http.get(
        f"/v1/jobs/{job['id']}/events/stream",
        params=caller.scope,
        headers={"Last-Event-ID": "abc"},
    )
    assert answer.status_code == 400


def test_a_replay_longer_than_a_batch_comes_whole_and_in_order(
    plane: RunningPlane, caller: Caller
) -> None:
    """4,500 stored events span three of the stream's batches; every one arrives, in order."""
    job = create(caller, "sleep")
    deadline = time.monotonic() + 30
    while event_types(caller, job["id"]) != ["training.started"]:  # the worker's only event
        assert time.monotonic() < deadline, "the worker never reported its start"
        time.sleep(0.05)
    count = 4_500
    db = Database(plane.settings.database_path)
    try:
        for step in range(1, count + 1):
            store.append_event(db=db, job_id=job["id"], data={"type": "training.log", "step": step})
        store.append_event(db=db, job_id=job["id"], data={"type": "training.completed"})
    finally:
        db.close()

    with stream(caller, job["id"]) as frames:
        replayed = list(frames)
    assert [f.id for f in replayed] == [str(n) for n in range(1, count + 3)] + [None]
    steps = [json.loads(f.data).get("step") for f in replayed[1 : count + 1]]
    assert steps == list(range(1, count + 1))
    assert [f.event for f in replayed[-2:]] == ["training.completed", "end"]

    with stream(caller, job["id"], last_id="2000") as frames:  # resume at a batch boundary
        assert [f.id for f in frames][:2] == ["2001", "2002"]
