"""Real runs whose worker shares no disk with the plane (``--artifacts plane``).

The plane starts the real worker with ``--artifacts plane`` in place of its folder, so
every file the plane serves afterwards arrived over HTTP; a resumed run starts in an
empty scratch folder and must fetch its checkpoint from the plane.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils.plane import (
    Caller,
    running_plane,
    sign_up,
    tiny_job,
    toy_dataset,
    upload,
    wait_for_status,
)

pytestmark = pytest.mark.slow

UPLOADING_WORKER = (
    sys.executable,
    "-c",
    "import sys; from arkor.engine._worker import main; args = sys.argv[1:]; "
    "args[args.index('--artifacts') + 1] = 'plane'; sys.exit(main(args))",
)
"""The real worker, told to upload its files instead of writing the plane's folder."""
EVAL = {"heldOut": 0.2, "rows": 4, "metrics": ["exact_match"]}


def events(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = caller.http.get(
        f"/v1/jobs/{job_id}", params=caller.scope
    ).json()["events"]
    return answer


def test_a_run_uploads_every_artifact_its_events_name(tiny_model: Path, tmp_path: Path) -> None:
    with running_plane(tmp_path / "home", worker_command=UPLOADING_WORKER) as plane:
        caller = sign_up(plane.url)
        body = tiny_job(tiny_model, upload(caller, toy_dataset()), eval=EVAL)
        job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
        job = wait_for_status(caller, job_id, {"completed", "failed"}, timeout=300)
        assert job["status"] == "completed", job.get("error")

        named = {
            artifact["path"]: artifact["size"]
            for event in events(caller, job_id)
            for artifact in event.get("artifacts", [])
        }
        assert "eval/held-out.jsonl" in named and "adapter/adapter_config.json" in named
        assert "checkpoints/checkpoint-2/trainer_state.json" in named
        listed = caller.http.get(f"/v1/jobs/{job_id}/artifacts", params=caller.scope).json()
        assert {a["path"]: a["size"] for a in listed["artifacts"]} == named
        for path in named:
            answer = caller.http.get(f"/v1/jobs/{job_id}/artifacts/{path}", params=caller.scope)
            assert answer.status_code == 200, path
            digest = hashlib.sha256(answer.content).hexdigest()
            assert answer.headers["x-content-sha256"] == digest, path

        chat = caller.http.post(
            "/v1/inference/chat",
            params=caller.scope,
            json={
                "messages": [{"role": "user", "content": "say hello"}],
                "maxTokens": 4,
                "temperature": 0,
                "adapter": {"kind": "final", "jobId": job_id},
            },
            timeout=120,
        )
        assert chat.status_code == 200, chat.text
        caller.close()


def test_a_resumed_run_fetches_its_newest_checkpoint_from_the_plane(
    tiny_model: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with running_plane(home, worker_command=UPLOADING_WORKER) as plane:
        caller = sign_up(plane.url)
        body = tiny_job(tiny_model, upload(caller, toy_dataset()), maxSteps=200, saveSteps=10)
        job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
        deadline = time.monotonic() + 300
        while not any(e["type"] == "checkpoint.saved" for e in events(caller, job_id)):
            assert time.monotonic() < deadline, "the job never saved a checkpoint"
            time.sleep(0.05)
        caller.close()
    # the plane stopped its worker (SIGTERM): the job waits to resume, its scratch folder gone
    with running_plane(home, worker_command=UPLOADING_WORKER) as plane:
        caller.http = httpx.Client(base_url=plane.url, headers=dict(caller.http.headers))
        job = wait_for_status(caller, job_id, {"completed", "failed"}, timeout=300)
        assert job["status"] == "completed", job.get("error")
        kept = events(caller, job_id)
        caller.close()
    starts = [e for e in kept if e["type"] == "training.started"]
    assert len(starts) == 2
    saved = [e["step"] for e in kept[: kept.index(starts[1])] if e["type"] == "checkpoint.saved"]
    assert starts[1]["metadata"]["resumedFromStep"] >= max(saved), (saved, starts[1])
