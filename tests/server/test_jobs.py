"""Jobs with the fake worker: create, idempotency, queueing, cancel, workers that die."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import Caller, running_plane, sign_up, upload, wait_for_status

DATA = b'{"messages": [{"role": "user", "content": "hi"}]}\n'


def job_body(caller: Caller, name: str, **config: Any) -> dict[str, Any]:
    upload_id = upload(caller, DATA)
    settings = {"model": "tiny", "datasetSource": {"type": "file", "uploadId": upload_id}}
    return {"name": name, "config": {**settings, **config}}


def create(caller: Caller, name: str, **headers: str) -> dict[str, Any]:
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, json=job_body(caller, name), headers=headers
    )
    assert answer.status_code == 201, answer.text
    job: dict[str, Any] = answer.json()["job"]
    return job


def cancel(caller: Caller, job_id: str) -> int:
    return caller.http.post(f"/v1/jobs/{job_id}/cancel", params=caller.scope).status_code


def event_types(caller: Caller, job_id: str) -> list[str]:
    answer = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()
    return [event["type"] for event in answer["events"]]


def wait_for_events(caller: Caller, job_id: str, types: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while event_types(caller, job_id) != types:
        assert time.monotonic() < deadline, event_types(caller, job_id)
        time.sleep(0.05)


def test_a_job_runs_to_completion_with_its_events(caller: Caller) -> None:
    job = create(caller, "events:2")
    assert job["status"] == "queued"
    assert job["config"]["datasetSource"]["type"] == "file"
    assert "error" not in job  # absent optional fields are left out, as on the wire

    done = wait_for_status(caller, job["id"], {"completed"})
    assert done["startedAt"] and done["completedAt"]
    assert event_types(caller, job["id"]) == [
        "training.started",
        "training.log",
        "training.log",
        "training.completed",
    ]
    bare = caller.http.get(f"/v1/jobs/{job['id']}", params={**caller.scope, "events": "false"})
    assert "events" not in bare.json()


def test_jobs_are_listed_newest_first(caller: Caller) -> None:
    ids = [create(caller, "events:0")["id"] for _ in range(3)]
    listed = caller.http.get("/v1/jobs", params=caller.scope).json()["jobs"]
    assert [job["id"] for job in listed] == ids[::-1]


def test_a_file_dataset_must_be_an_upload_of_the_project(caller: Caller) -> None:
    body = job_body(caller, "x")
    body["config"]["datasetSource"] = {"type": "file", "uploadId": "upl_missing"}
    missing = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    body["config"]["datasetSource"] = {"type": "file", "path": "train.jsonl"}
    not_uploaded = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    assert missing.status_code == 422 and "upl_missing" in missing.json()["error"]
    assert not_uploaded.status_code == 422 and "uploadId" in not_uploaded.json()["error"]


def test_idempotency_key_returns_the_same_job_for_the_same_body(caller: Caller) -> None:
    body = job_body(caller, "events:0")
    headers = {"Idempotency-Key": "key-1"}
    first = caller.http.post("/v1/jobs", params=caller.scope, json=body, headers=headers)
    again = caller.http.post("/v1/jobs", params=caller.scope, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"

    other = {**body, "name": "events:1"}
    clash = caller.http.post("/v1/jobs", params=caller.scope, json=other, headers=headers)
    assert clash.status_code == 422
    assert "key-1" in clash.json()["error"]

    fresh = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    assert fresh.json()["job"]["id"] != first.json()["job"]["id"]
    assert len(caller.http.get("/v1/jobs", params=caller.scope).json()["jobs"]) == 2


def test_max_jobs_queues_the_rest_and_cancel_frees_the_slot(caller: Caller) -> None:
    first = create(caller, "until-cancel")
    second = create(caller, "until-cancel")
    wait_for_status(caller, first["id"], {"running"})
    assert wait_for_status(caller, second["id"], {"queued"}, timeout=0)["status"] == "queued"

    third = create(caller, "until-cancel")
    assert cancel(caller, third["id"]) == 202  # a queued job ends at once
    assert wait_for_status(caller, third["id"], {"cancelled"}, timeout=0)
    assert event_types(caller, third["id"]) == ["training.cancelled"]

    assert cancel(caller, first["id"]) == 202
    ended = wait_for_status(caller, first["id"], {"cancelled"})
    assert event_types(caller, first["id"]) == ["training.started", "training.cancelled"]
    started = wait_for_status(caller, second["id"], {"running"})  # the slot went to the queued job
    assert started["startedAt"] >= ended["completedAt"], "it stayed queued while the first ran"

    assert cancel(caller, second["id"]) == 202
    wait_for_status(caller, second["id"], {"cancelled"})
    assert cancel(caller, second["id"]) == 409
    assert cancel(caller, first["id"]) == 409


def test_a_worker_that_exits_without_an_outcome_fails_its_job(caller: Caller) -> None:
    job = create(caller, "exit:3")
    failed = wait_for_status(caller, job["id"], {"failed"})
    assert "exited with code 3" in failed["error"]
    assert event_types(caller, job["id"]) == ["training.failed"]


def test_a_worker_that_ignores_a_cancel_is_stopped(plane_home: Path) -> None:
    with running_plane(
        plane_home, worker_command=FAKE_WORKER, cancel_grace=0.2, lease_ttl=0.6
    ) as plane:
        caller = sign_up(plane.url)
        job = create(caller, "ignore-cancel")
        wait_for_status(caller, job["id"], {"running"})
        assert cancel(caller, job["id"]) == 202
        wait_for_status(caller, job["id"], {"cancelled"}, timeout=10)
        caller.close()


def test_stopping_the_plane_puts_its_running_jobs_back_in_the_queue(
    plane_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_plane(plane_home, worker_command=FAKE_WORKER) as plane:
        caller = sign_up(plane.url)
        job = create(caller, "sleep")
        wait_for_events(caller, job["id"], ["training.started"])
    assert "1 running job will resume from its last checkpoint" in caplog.text
    with running_plane(plane_home, worker_command=FAKE_WORKER) as plane:
        caller.http.base_url = plane.url
        wait_for_events(caller, job["id"], ["training.started"] * 2)
        answer = caller.http.get(f"/v1/jobs/{job['id']}", params=caller.scope).json()
        assert answer["job"]["status"] == "running"
        assert [event["metadata"] for event in answer["events"]] == [
            {"resume": False},
            {"resume": True},
        ], "the second worker is told to resume"
        caller.close()


def test_worker_routes_need_the_job_token(caller: Caller) -> None:
    job = create(caller, "events:1")
    for method, path in (
        ("GET", ""),
        ("GET", "/dataset"),
        ("POST", "/heartbeat"),
    ):
        answer = caller.http.request(method, f"/v1/internal/jobs/{job['id']}{path}")
        assert answer.status_code == 401, path
    posted = caller.http.post(
        f"/v1/internal/jobs/{job['id']}/events",
        json={"type": "training.started", "jobId": job["id"]},
    )
    assert posted.status_code == 401
