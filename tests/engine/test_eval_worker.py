"""The worker on a real plane: a job whose eval block names an uploaded eval file is
evaluated on that file's rows, and none of them is trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.plane import running_plane, sign_up, tiny_job, toy_dataset, upload, wait_for_status
from tests.utils.requires import need

need("fastapi", "these tests run the real plane")

pytestmark = pytest.mark.slow  # a worker process that imports torch, on a plane

EVAL_ROWS = [
    {
        "messages": [
            {"role": "user", "content": "say hello"},
            {"role": "assistant", "content": "hello world"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "red or blue?"},
            {"role": "assistant", "content": "blue"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "count to two"},
            {"role": "assistant", "content": "one two"},
        ]
    },
]


def test_a_job_is_evaluated_on_its_uploaded_eval_file(tiny_model: Path, tmp_path: Path) -> None:
    eval_file = "".join(json.dumps(row) + "\n" for row in EVAL_ROWS).encode()
    with running_plane(tmp_path / "home") as plane:
        caller = sign_up(plane.url)
        spec = {
            "source": {"type": "file", "uploadId": upload(caller, eval_file, "eval.jsonl")},
            "metrics": ["exact_match", "rouge_l"],
            "maxNewTokens": 4,
        }
        body = tiny_job(tiny_model, upload(caller, toy_dataset()), eval=spec)
        created = caller.http.post("/v1/jobs", params=caller.scope, json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job"]["id"]
        wait_for_status(caller, job_id, {"completed", "failed"}, timeout=180)
        events = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
        caller.close()

    types = [event["type"] for event in events]
    assert types[-2:] == ["eval.completed", "training.completed"], events[-1]
    started, evaluated = events[0], events[-2]
    # "say hello" is among the training rows too: its 3 copies are left out of training
    assert started["metadata"]["heldOutRows"] == 3
    assert started["metadata"]["duplicatesDropped"] == 3
    assert started["metadata"]["trainRows"] == len(toy_dataset().splitlines()) - 3
    assert "error" not in evaluated
    assert [sample["reference"] for sample in evaluated["samples"]] == [
        "hello world",
        "blue",
        "one two",
    ]
    assert [sample["number"] for sample in evaluated["samples"]] == [1, 2, 3]
    assert {score["name"]: score["count"] for score in evaluated["metrics"]} == {
        "exact_match": 3,
        "rouge_l": 3,
    }
    held = (plane.settings.artifacts_dir / job_id / "eval" / "held-out.jsonl").read_text()
    assert [json.loads(line)["reference"] for line in held.splitlines()] == [
        "hello world",
        "blue",
        "one two",
    ]
