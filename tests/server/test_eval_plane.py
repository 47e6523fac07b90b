"""Evals on the plane without a model: eval.completed events, the eval file, the eval route's refusals.

The jobs run ``eval_worker.py`` (the worker protocol, an eval event of long rows, the
files a run leaves); the route's refusals come before any model is loaded. The eval
that runs the inference worker is in ``tests/cli/test_eval_cli.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.server import RunningPlane
from arkor.server import _store as store
from arkor.server._db import Database
from tests.utils.plane import Caller, running_plane, sign_up, sse_frames, upload, wait_for_status
from tests.utils.requires import need

need("fastapi", "these tests run the real plane")

EVAL_WORKER = (sys.executable, str(Path(__file__).with_name("eval_worker.py")))
DATA = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
)
EVAL = {"heldOut": 0.1, "rows": 8, "metrics": ["exact_match"]}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[RunningPlane]:
    with running_plane(
        tmp_path / "plane-home",
        worker_command=EVAL_WORKER,
        ping_interval=0.2,
        follow_poll_interval=0.5,
    ) as running:
        yield running


@pytest.fixture
def caller(plane: RunningPlane) -> Iterator[Caller]:
    identity = sign_up(plane.url)
    yield identity
    identity.close()


def submit(caller: Caller, name: str, **config: Any) -> dict[str, Any]:
    settings = {
        "model": "tiny",
        "datasetSource": {"type": "file", "uploadId": upload(caller, DATA)},
    }
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, json={"name": name, "config": {**settings, **config}}
    )
    assert answer.status_code == 201, answer.text
    job: dict[str, Any] = answer.json()["job"]
    return job


def events(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()[
        "events"
    ]
    return found


def evaluate(caller: Caller, job_id: str, body: Any) -> httpx.Response:
    return caller.http.post(f"/v1/jobs/{job_id}/evals", params=caller.scope, json=body)


def test_an_eval_of_1000_long_rows_is_stored_and_streamed_and_leaves_the_status_alone(
    plane: RunningPlane, caller: Caller
) -> None:
    """The worker's eval.completed (1000 rows of ~1 KB texts, several MiB: more than the plane
    takes in any other JSON body) is stored whole, in order, and the job completes after it."""
    job = submit(caller, "eval:1000", eval=EVAL)
    assert wait_for_status(caller, job["id"], {"completed", "failed"})["status"] == "completed"
    stored = events(caller, job["id"])
    assert [event["type"] for event in stored] == [
        "training.started",
        "eval.completed",
        "training.completed",
    ]
    evaluated = stored[1]
    assert len(json.dumps(evaluated)) > plane.settings.max_body_bytes * 4
    assert evaluated["final"] is True and evaluated["rows"] == 1000
    assert len(evaluated["samples"]) == 1000
    assert evaluated["samples"][999]["adapter"] == "x" * 1000
    assert evaluated["metrics"] == [
        {"name": "exact_match", "base": 0.0, "adapter": 1.0, "count": 1000}
    ]
    with caller.http.stream(
        "GET", f"/v1/jobs/{job['id']}/events/stream", params=caller.scope
    ) as response:
        frames = list(sse_frames(response.iter_lines()))
    assert [frame.event for frame in frames] == [
        "training.started",
        "eval.completed",
        "training.completed",
        "end",
    ]
    assert len(frames[1].json()["samples"]) == 1000


def test_an_eval_event_does_not_end_a_running_job(caller: Caller) -> None:
    job = submit(caller, "eval-then-wait", eval=EVAL)
    deadline = time.monotonic() + 60
    while [event["type"] for event in events(caller, job["id"])] != [
        "training.started",
        "eval.completed",
    ]:
        assert time.monotonic() < deadline, events(caller, job["id"])
        time.sleep(0.05)
    current = caller.http.get(f"/v1/jobs/{job['id']}", params=caller.scope).json()["job"]
    assert current["status"] == "running" and "completedAt" not in current
    answer = evaluate(caller, job["id"], {})
    assert answer.status_code == 409
    assert "is running; only a completed job can be evaluated" in answer.json()["error"]
    assert caller.http.post(f"/v1/jobs/{job['id']}/cancel", params=caller.scope).status_code == 202
    assert wait_for_status(caller, job["id"], {"cancelled"})["status"] == "cancelled"
    assert [event["type"] for event in events(caller, job["id"])] == [
        "training.started",
        "eval.completed",
        "training.cancelled",
    ]


def test_a_worker_event_larger_than_the_event_cap_is_413_naming_its_setting(
    tmp_path: Path,
) -> None:
    with running_plane(
        tmp_path / "home", worker_command=("true",), max_body_bytes=1000, max_event_bytes=5000
    ) as plane:
        url = f"{plane.url}/v1/internal/jobs/job_x/events"
        event = b'{"type": "training.log", "jobId": "job_x", "step": 1'
        json_type = {"Content-Type": "application/json"}
        big = httpx.post(url, content=event + b" " * 6000 + b"}", headers=json_type)
        assert big.status_code == 413
        assert "ARKOR_MAX_EVENT_BYTES" in big.json()["error"]
        assert "5000 bytes" in big.json()["error"]
        fits = httpx.post(url, content=event + b" " * 3000 + b"}", headers=json_type)
        assert fits.status_code == 401, "under the event cap, the token check answers"
        other = httpx.post(
            f"{plane.url}/v1/projects", content=b"{" + b" " * 3000 + b"}", headers=json_type
        )
        assert other.status_code == 413 and "ARKOR_MAX_BODY_BYTES" in other.json()["error"]


def test_the_worker_gets_the_uploaded_eval_file(caller: Caller) -> None:
    held_out = (
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    )
    upload_id = upload(caller, held_out, name="eval.jsonl")
    spec = {"source": {"type": "file", "uploadId": upload_id, "path": "data/eval.jsonl"}}
    job = submit(caller, "eval:1", eval=spec)
    wait_for_status(caller, job["id"], {"completed"})
    metadata = events(caller, job["id"])[0]["metadata"]
    digest = hashlib.sha256(held_out).hexdigest()
    assert metadata == {"evalFileStatus": 200, "evalFile": digest, "evalFileHeader": digest}

    plain = submit(caller, "eval:1", eval=EVAL)
    wait_for_status(caller, plain["id"], {"completed"})
    metadata = events(caller, plain["id"])[0]["metadata"]
    assert metadata["evalFileStatus"] == 409
    assert metadata["evalFileError"] == f"Job `{plain['id']}` has no uploaded eval file."


def test_a_job_naming_an_eval_upload_of_another_project_is_422(
    plane: RunningPlane, caller: Caller
) -> None:
    other = sign_up(plane.url)
    try:
        foreign = upload(other, DATA, name="eval.jsonl")
    finally:
        other.close()
    settings = {
        "model": "tiny",
        "datasetSource": {"type": "file", "uploadId": upload(caller, DATA)},
    }
    for source, said in (
        ({"type": "file", "uploadId": foreign}, f"Upload `{foreign}` is not in this project."),
        ({"type": "file", "path": "data/eval.jsonl"}, "needs an `uploadId`"),
    ):
        answer = caller.http.post(
            "/v1/jobs",
            params=caller.scope,
            json={"name": "n", "config": {**settings, "eval": {"source": source}}},
        )
        assert answer.status_code == 422
        assert said in answer.json()["error"]


def test_the_eval_route_refuses_what_it_cannot_evaluate(
    plane: RunningPlane, caller: Caller
) -> None:
    bare = submit(caller, "eval:1")
    job = submit(caller, "eval:2", eval=EVAL)
    for each in (bare, job):
        wait_for_status(caller, each["id"], {"completed"})

    answer = evaluate(caller, bare["id"], {})
    assert answer.status_code == 409
    assert "its config has no eval block" in answer.json()["error"]
    assert "[trainer.eval]" in answer.json()["error"]

    answer = evaluate(caller, job["id"], {"checkpoint": 99})
    assert answer.status_code == 404
    assert answer.json()["error"] == f"Checkpoint 99 of job `{job['id']}` not found."

    for body, said in (
        ({"rows": 0}, "rows"),
        ({"rows": 1001}, "rows"),
        ({"rows": "many"}, "rows"),
        ({"checkpoint": -1}, "checkpoint"),
        ({"rowz": 3}, "rowz"),
    ):
        answer = evaluate(caller, job["id"], body)
        assert answer.status_code == 422, body
        assert said in answer.json()["error"]

    outsider = sign_up(plane.url)
    try:
        for job_id in (job["id"], "job_unknown"):
            answer = outsider.http.post(f"/v1/jobs/{job_id}/evals", params=outsider.scope, json={})
            assert answer.status_code == 404
            assert answer.json()["error"] == f"Job `{job_id}` not found."
    finally:
        outsider.close()

    (plane.settings.artifacts_dir / job["id"] / "eval" / "held-out.jsonl").unlink()
    answer = evaluate(caller, job["id"], {})
    assert answer.status_code == 409
    assert "has no held-out rows (eval/held-out.jsonl" in answer.json()["error"]
    assert [event["type"] for event in events(caller, job["id"])][-1] == "training.completed"


def test_a_requested_eval_is_stored_after_the_end_without_reopening_the_job(
    plane: RunningPlane, caller: Caller
) -> None:
    job = submit(caller, "eval:2", eval=EVAL)
    before = wait_for_status(caller, job["id"], {"completed"})
    db = Database(plane.settings.database_path)
    try:
        late = {"type": "training.log", "step": 9}
        assert store.append_event(db=db, job_id=job["id"], data=late) is None
        requested = {"type": "eval.completed", "requested": True, "rows": 1, "step": 4}
        ack = store.append_requested_eval(db=db, job_id=job["id"], data=requested)
        assert ack is not None and ack.id == 4
        with pytest.raises(ValueError, match=r"only an eval\.completed"):
            store.append_requested_eval(db=db, job_id=job["id"], data=late)
    finally:
        db.close()
    after = caller.http.get(f"/v1/jobs/{job['id']}", params=caller.scope).json()
    assert after["job"] == before
    assert [event["type"] for event in after["events"]] == [
        "training.started",
        "eval.completed",
        "training.completed",
        "eval.completed",
    ]
    assert after["events"][-1]["requested"] is True
    with caller.http.stream(
        "GET", f"/v1/jobs/{job['id']}/events/stream", params=caller.scope
    ) as response:
        frames = list(sse_frames(response.iter_lines()))
    assert [frame.event for frame in frames][-3:] == ["training.completed", "eval.completed", "end"]
    with caller.http.stream(
        "GET",
        f"/v1/jobs/{job['id']}/events/stream",
        params=caller.scope,
        headers={"Last-Event-ID": "3"},
    ) as response:
        assert [frame.event for frame in sse_frames(response.iter_lines())] == [
            "eval.completed",
            "end",
        ]
