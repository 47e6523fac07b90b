"""A worker's failure keeps its reason: names the worker can't use are refused at upload,
and a worker that crashes leaves its last output as the job's error."""

from __future__ import annotations

import sqlite3
import sys
from hashlib import sha256
from pathlib import Path

import pytest

from arkor.server import RunningPlane
from tests.server.test_jobs import create
from tests.utils.plane import (
    Caller,
    running_plane,
    sign_up,
    tiny_job,
    toy_dataset,
    upload,
    wait_for_status,
)

DATA = b'{"messages": []}\n'

CRASH = """
import sys
for n in range(100):
    print(f"line {n:03}", flush=True)
print("loading the dataset", file=sys.stderr, flush=True)
raise RuntimeError("the dataset is on fire")
"""
"""A worker that prints a lot, then dies of an exception without reporting anything."""


def post_upload(caller: Caller, name: str) -> tuple[int, str]:
    answer = caller.http.post(
        "/v1/uploads",
        params=caller.scope,
        content=DATA,
        headers={"X-Content-Sha256": sha256(DATA).hexdigest(), "X-Filename": name},
    )
    return answer.status_code, answer.text


@pytest.mark.parametrize("name", ["..", ".", "data/..", "/", "a\tb.jsonl", "x\x7f"])
def test_a_name_that_is_no_file_name_is_refused(
    plane: RunningPlane, caller: Caller, name: str
) -> None:
    status, body = post_upload(caller, name)
    assert status == 400, body
    assert "X-Filename" in body and "not a file name" in body
    assert [p for p in plane.settings.uploads_dir.iterdir()] == [], "nothing was stored"


def test_a_path_keeps_only_its_file_name(plane: RunningPlane, caller: Caller) -> None:
    status, _ = post_upload(caller, "data\\sets/train.jsonl")
    assert status == 201
    with sqlite3.connect(plane.settings.database_path) as db:
        assert db.execute("SELECT name FROM uploads").fetchall() == [("train.jsonl",)]


def test_a_crashed_workers_last_output_becomes_the_jobs_error(plane_home: Path) -> None:
    with running_plane(plane_home, worker_command=(sys.executable, "-c", CRASH)) as plane:
        caller = sign_up(plane.url)
        job = create(caller, "crash")
        failed = wait_for_status(caller, job["id"], {"failed"})
        caller.close()
    error: str = failed["error"]
    first = error.splitlines()[0]
    assert "exited with code 1" in first
    assert first.endswith("RuntimeError: the dataset is on fire"), "the exception comes first"
    assert "Traceback (most recent call last)" in error and "loading the dataset" in error
    assert "line 099" in error and "line 050" not in error, "only the last lines are kept"
    assert str(plane.settings.logs_dir / f"{job['id']}.log") in error


@pytest.mark.slow
def test_an_older_upload_named_dotdot_fails_with_a_reason_not_a_crash(
    plane_home: Path, tiny_model: Path
) -> None:
    """An upload kept before names were checked: the real worker names its copy itself."""
    with running_plane(plane_home) as plane:
        caller = sign_up(plane.url)
        upload_id = upload(caller, toy_dataset())
        with sqlite3.connect(plane.settings.database_path) as db:
            db.execute("UPDATE uploads SET name = '..' WHERE id = ?", (upload_id,))
        body = tiny_job(tiny_model, upload_id, maxSteps=1, saveSteps=1)
        job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
        failed = wait_for_status(caller, job_id, {"failed"}, timeout=180)
        caller.close()
    assert failed["error"].startswith("Cannot tell what kind of file the dataset file"), failed[
        "error"
    ]
