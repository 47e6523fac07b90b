"""Real runs: the tiny model trains in a worker process; artifacts and inference from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import ChatCompletion, ChatCompletionChunk
from arkor.server import RunningPlane
from tests.utils.engine_answer import greedy_answer
from tests.utils.plane import (
    Caller,
    Frame,
    running_plane,
    sign_up,
    sse_frames,
    tiny_job,
    toy_dataset,
    upload,
    wait_for_status,
)

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "say hello"}]
MAX_TOKENS = 6


@dataclass
class Trained:
    plane: RunningPlane
    caller: Caller
    job_id: str
    live: list[Frame]
    """The frames of a stream opened right after the job was created."""


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    with running_plane(tmp_path_factory.mktemp("plane") / "home") as plane:
        caller = sign_up(plane.url)
        # fp32: two steps along which checkpoint-2 already answers unlike the base
        body = tiny_job(tiny_model, upload(caller, toy_dataset()), precision="fp32")
        created = caller.http.post("/v1/jobs", params=caller.scope, json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job"]["id"]
        with caller.http.stream(
            "GET", f"/v1/jobs/{job_id}/events/stream", params=caller.scope, timeout=120
        ) as response:
            live = list(sse_frames(response.iter_lines()))
        yield Trained(plane, caller, job_id, live)
        caller.close()


def test_the_job_trains_to_completion_and_streams_live(trained: Trained) -> None:
    caller, job_id = trained.caller, trained.job_id
    job = wait_for_status(caller, job_id, {"completed"}, timeout=0)
    assert job["startedAt"] <= job["completedAt"]

    events = [f for f in trained.live if f.event != "ping"]
    types = [f.event for f in events]
    assert types[0] == "training.started" and types[-2:] == ["training.completed", "end"]
    assert [f.json()["step"] for f in events if f.event == "checkpoint.saved"] == [2, 4]
    assert [f.json()["step"] for f in events if f.event == "training.log"] == [1, 2, 3, 4]
    ids = [int(f.id) for f in events if f.id is not None]
    assert ids == list(range(1, len(ids) + 1))

    stored = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
    assert [json.loads(f.data) for f in events[:-1]] == stored


def test_artifacts_are_listed_and_downloadable(trained: Trained) -> None:
    caller, job_id = trained.caller, trained.job_id
    listed = caller.http.get(f"/v1/jobs/{job_id}/artifacts", params=caller.scope).json()
    paths = {artifact["path"]: artifact["size"] for artifact in listed["artifacts"]}
    assert "adapter/adapter_config.json" in paths
    assert "checkpoints/checkpoint-2/adapter_model.safetensors" in paths
    assert not any(path.startswith("cache/") for path in paths)

    folder = trained.plane.settings.artifacts_dir / job_id
    answer = caller.http.get(
        f"/v1/jobs/{job_id}/artifacts/adapter/adapter_config.json", params=caller.scope
    )
    assert answer.status_code == 200
    assert answer.content == (folder / "adapter" / "adapter_config.json").read_bytes()
    assert len(answer.content) == paths["adapter/adapter_config.json"]


def chat(trained: Trained, **body: Any) -> Any:
    return trained.caller.http.post(
        "/v1/inference/chat",
        params=trained.caller.scope,
        json={"messages": CHAT, "maxTokens": MAX_TOKENS, "temperature": 0, **body},
        timeout=120,
    )


def test_inference_from_the_final_adapter(trained: Trained, tiny_model: Path) -> None:
    answer = chat(trained, adapter={"kind": "final", "jobId": trained.job_id}, stream=False)
    assert answer.status_code == 200, answer.text
    completion = ChatCompletion.model_validate(answer.json())
    assert completion.model == f"{trained.job_id}/final"
    assert completion.usage.completion_tokens >= 1
    assert completion.choices[0].finish_reason in ("stop", "length")

    folder = trained.plane.settings.artifacts_dir / trained.job_id / "adapter"
    expected = greedy_answer(tiny_model, folder, CHAT, MAX_TOKENS)
    assert expected != greedy_answer(tiny_model, None, CHAT, MAX_TOKENS), "training changed nothing"
    assert completion.choices[0].message.content == expected


def test_inference_streams_from_a_checkpoint(trained: Trained, tiny_model: Path) -> None:
    adapter = {"kind": "checkpoint", "jobId": trained.job_id, "step": 2}
    with trained.caller.http.stream(
        "POST",
        "/v1/inference/chat",
        params=trained.caller.scope,
        json={"messages": CHAT, "maxTokens": MAX_TOKENS, "temperature": 0, "adapter": adapter},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [f.data for f in sse_frames(response.iter_lines())]
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(item) for item in data[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].choices[0].finish_reason
    assert {chunk.model for chunk in chunks} == {f"{trained.job_id}/checkpoint-2"}

    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    whole = chat(trained, adapter=adapter, stream=False).json()
    assert whole["choices"][0]["message"]["content"] == streamed  # greedy: the same answer

    folder = trained.plane.settings.artifacts_dir / trained.job_id / "checkpoints" / "checkpoint-2"
    expected = greedy_answer(tiny_model, folder, CHAT, MAX_TOKENS)
    assert expected != greedy_answer(tiny_model, None, CHAT, MAX_TOKENS), "training changed nothing"
    assert streamed == expected


def test_inference_refuses_what_it_cannot_resolve(trained: Trained) -> None:
    job_id = trained.job_id
    missing_step = chat(trained, adapter={"kind": "checkpoint", "jobId": job_id, "step": 3})
    missing_job = chat(trained, adapter={"kind": "final", "jobId": "job_nope"})
    nothing = chat(trained)
    assert missing_step.status_code == 404 and "3" in missing_step.json()["error"]
    assert missing_job.status_code == 404
    assert nothing.status_code == 422 and "baseModel" in nothing.json()["error"]


def test_cancel_stops_real_training_within_a_step(tiny_model: Path, plane_home: Path) -> None:
    """The step running when the cancel arrives ends the run, or at most the one after it.

    ``reported`` is the newest step the plane had stored when it accepted the cancel: step
    ``reported + 1`` was under way then, so every step past it began after the request.
    """
    with running_plane(plane_home) as plane:
        caller = sign_up(plane.url)
        body = tiny_job(
            tiny_model, upload(caller, toy_dataset()), maxSteps=100_000, saveSteps=100_000
        )
        job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
        with caller.http.stream(
            "GET", f"/v1/jobs/{job_id}/events/stream", params=caller.scope, timeout=120
        ) as response:
            frames = sse_frames(response.iter_lines())
            for frame in frames:
                if frame.event == "training.log":
                    cancel = caller.http.post(f"/v1/jobs/{job_id}/cancel", params=caller.scope)
                    assert cancel.status_code == 202
                    break
            stored = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
            reported = max(event["step"] for event in stored if event["type"] == "training.log")
            rest = [f for f in frames if f.event != "ping"]
        assert [f.event for f in rest if f.event != "training.log"] == ["training.cancelled", "end"]
        cancelled = next(f.json() for f in rest if f.event == "training.cancelled")
        begun_after_the_cancel = cancelled["step"] - (reported + 1)
        assert begun_after_the_cancel <= 1, (reported, cancelled["step"])
        job = wait_for_status(caller, job_id, {"cancelled"}, timeout=0)
        assert "error" not in job
        caller.close()
