"""A plane with ``--executor ray`` in front of a real Ray head on loopback: a job trains
there and looks as a local one does; a job asking for more than the cluster has waits,
saying why, until cancelled; a killed worker resumes from its uploaded checkpoint, and a
cancel then ends its Ray job."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from arkor.server import RunningPlane
from tests.utils.plane import (
    Caller,
    running_plane,
    sign_up,
    tiny_job,
    toy_dataset,
    upload,
    wait_for_status,
)
from tests.utils.ray_head import RayHead, ray_cluster

__all__ = ["ray_cluster"]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def ray_plane(ray_cluster: RayHead, tmp_path: Path) -> Iterator[RunningPlane]:
    with running_plane(
        tmp_path / "home",
        executor="ray",
        ray_address=ray_cluster.dashboard_url,
        ray_worker_command=(sys.executable, "-m", "arkor.engine.worker"),
        ray_runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "ARKOR_TELEMETRY_DISABLED": "1"}},
        lease_ttl=6.0,
        cancel_grace=5.0,
    ) as plane:
        yield plane


@pytest.fixture
def caller(ray_plane: RunningPlane) -> Iterator[Caller]:
    signed_up = sign_up(ray_plane.url)
    try:
        yield signed_up
    finally:
        signed_up.close()


def submit(caller: Caller, body: dict[str, Any]) -> str:
    answer = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    answer.raise_for_status()
    job_id: str = answer.json()["job"]["id"]
    return job_id


def job_of(caller: Caller, job_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()
    return answer


def ray_status(head: RayHead, submission_id: str) -> str:
    """The Ray job's status, from the dashboard's REST API."""
    answer = httpx.get(f"{head.dashboard_url}/api/jobs/{submission_id}", timeout=30)
    answer.raise_for_status()
    status: str = answer.json()["status"]
    return status


def ray_ended(head: RayHead, submission_id: str, timeout: float = 60.0) -> str:
    """The Ray job's status once it has ended."""
    deadline = time.monotonic() + timeout
    while (status := ray_status(head, submission_id)) not in ("STOPPED", "FAILED", "SUCCEEDED"):
        assert time.monotonic() < deadline, f"Ray job {submission_id} is still {status}"
        time.sleep(0.5)
    return status


def test_a_job_trains_on_ray_and_looks_as_a_local_one(
    caller: Caller, ray_cluster: RayHead, tiny_model: Path
) -> None:
    job_id = submit(caller, tiny_job(tiny_model, upload(caller, toy_dataset())))
    job = wait_for_status(caller, job_id, {"completed", "failed", "cancelled"}, timeout=300)
    assert job["status"] == "completed", job.get("error")
    envelope = job_of(caller, job_id)
    types = [event["type"] for event in envelope["events"]]
    assert types[0] == "training.started" and types[-1] == "training.completed"
    assert types.count("training.started") == 1 and types.count("training.completed") == 1
    steps = [event["step"] for event in envelope["events"] if event["type"] == "training.log"]
    assert steps == list(range(1, 5))  # every step once, in order
    placement = envelope["job"]["placement"]
    assert placement["executor"] == "ray" and placement["executorJobId"].startswith("arkor-")
    assert "Ray node" in placement["node"]
    assert ray_ended(ray_cluster, placement["executorJobId"]) == "SUCCEEDED"
    listed = caller.http.get(f"/v1/jobs/{job_id}/artifacts", params=caller.scope).json()
    paths = [item["path"] for item in listed["artifacts"]]
    assert any(path.startswith("adapter/") for path in paths)
    assert any(path.startswith("checkpoints/checkpoint-2/") for path in paths)
    adapter = next(path for path in paths if path.endswith("adapter_model.safetensors"))
    download = caller.http.get(f"/v1/jobs/{job_id}/artifacts/{adapter}", params=caller.scope)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == download.headers["x-content-sha256"]


def test_with_a_shared_artifacts_folder_workers_write_there_and_upload_nothing(
    ray_cluster: RayHead, tmp_path: Path, tiny_model: Path
) -> None:
    home = tmp_path / "shared-home"
    # on one machine the plane's artifacts folder is where the nodes see it
    artifacts = home / "local" / "artifacts"
    with running_plane(
        home,
        executor="ray",
        ray_address=ray_cluster.dashboard_url,
        ray_worker_command=(sys.executable, "-m", "arkor.engine.worker"),
        ray_runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "ARKOR_TELEMETRY_DISABLED": "1"}},
        ray_artifacts=str(artifacts),
    ) as plane:
        caller = sign_up(plane.url)
        try:
            job_id = submit(caller, tiny_job(tiny_model, upload(caller, toy_dataset())))
            job = wait_for_status(caller, job_id, {"completed", "failed", "cancelled"}, timeout=300)
            assert job["status"] == "completed", job.get("error")
            listed = caller.http.get(f"/v1/jobs/{job_id}/artifacts", params=caller.scope).json()
        finally:
            caller.close()
    paths = {item["path"] for item in listed["artifacts"]}
    assert "adapter/adapter_model.safetensors" in paths
    assert (artifacts / job_id / "adapter" / "adapter_model.safetensors").is_file()
    assert not (home / "local" / "artifacts-partial").exists()  # nothing went over HTTP


def test_a_job_the_cluster_cannot_hold_waits_with_a_reason_and_cancels(
    caller: Caller, ray_cluster: RayHead, tiny_model: Path
) -> None:
    body = tiny_job(tiny_model, upload(caller, toy_dataset()), resources={"gpus": 4})
    job_id = submit(caller, body)
    deadline = time.monotonic() + 60
    while True:
        job = job_of(caller, job_id)["job"]
        if "No node of the Ray cluster" in (job.get("queueReason") or ""):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "queued" and "4 GPUs" in job["queueReason"]
    submission_id = job["placement"]["executorJobId"]
    assert ray_status(ray_cluster, submission_id) == "PENDING"
    assert caller.http.post(f"/v1/jobs/{job_id}/cancel", params=caller.scope).is_success
    assert wait_for_status(caller, job_id, {"cancelled"})["status"] == "cancelled"
    # Ray cannot stop a job pending on resources no node has (its supervisor never starts);
    # it fails it itself after RAY_JOB_START_TIMEOUT_SECONDS. The plane asked, and moved on.
    assert ray_status(ray_cluster, submission_id) in ("PENDING", "STOPPED", "FAILED")


def _worker_of(job_id: str) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "arkor.engine.worker" in cmdline and job_id in cmdline:
            return process
    raise AssertionError(f"no worker process of {job_id}")


def test_a_killed_worker_resumes_from_its_uploaded_checkpoint(
    caller: Caller, ray_cluster: RayHead, tiny_model: Path
) -> None:
    body = tiny_job(tiny_model, upload(caller, toy_dataset(repeat=20)), maxSteps=400, saveSteps=2)
    job_id = submit(caller, body)
    deadline = time.monotonic() + 180
    while not any(e["type"] == "checkpoint.saved" for e in job_of(caller, job_id)["events"]):
        assert time.monotonic() < deadline, job_of(caller, job_id)["job"]
        time.sleep(0.3)
    first = job_of(caller, job_id)["job"]["placement"]["executorJobId"]
    _worker_of(job_id).send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 180
    while True:
        events = job_of(caller, job_id)["events"]
        started = [e for e in events if e["type"] == "training.started"]
        if len(started) == 2:
            break
        assert time.monotonic() < deadline, job_of(caller, job_id)["job"]
        time.sleep(0.5)
    assert started[1]["metadata"]["resumedFromStep"] >= 2
    second = job_of(caller, job_id)["job"]["placement"]["executorJobId"]
    assert second != first and ray_ended(ray_cluster, first) == "FAILED"
    assert caller.http.post(f"/v1/jobs/{job_id}/cancel", params=caller.scope).is_success
    assert wait_for_status(caller, job_id, {"cancelled"}, timeout=120)["status"] == "cancelled"
    assert ray_ended(ray_cluster, second) in (
        "SUCCEEDED",
        "STOPPED",
        "FAILED",
    )  # the cancel ends it
