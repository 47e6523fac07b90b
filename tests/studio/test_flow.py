"""Studio's API end to end on the tiny model: start a run, follow it, chat, deploy, look at the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.requires import need
from tests.utils.studio import LOOPBACK, studio_for, template_project

need("fastapi", "Studio is a FastAPI app")
need("torch", "the run trains the tiny model for real")

pytestmark = pytest.mark.slow
TOKEN = "flow-token"
HEADERS = {"X-Arkor-Studio-Token": TOKEN}


@pytest.fixture
def client(project: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from arkor.studio._app import create_app

    monkeypatch.setenv("ARKOR_PORT", "0")
    template_project(project, tiny_model)
    with (
        studio_for(project) as studio,
        TestClient(create_app(studio, TOKEN), base_url=LOOPBACK, headers=HEADERS) as client,
    ):
        yield client


def frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """SSE frames as dicts of their fields (data decoded from JSON when it is)."""
    frame: dict[str, Any] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        frame[name] = json.loads(value) if name == "data" and value[:1] in "{[" else value


def events_after(client: Any, job_id: str, **request: Any) -> list[dict[str, Any]]:
    with client.stream("GET", f"/api/runs/{job_id}/events", **request) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return [frame for frame in frames(answer.iter_lines()) if frame.get("event") != "ping"]


def test_a_run_started_in_studio_trains_streams_answers_and_deploys(
    client: Any, project: Path
) -> None:
    configs = client.get("/api/configs").json()
    assert [config["name"] for config in configs["configs"]] == ["arkor.toml"]
    assert "trainer.max_steps" in configs["overrideKeys"]
    assert "trainer.lora.r" in configs["overrideKeys"]
    assert "trainer.dataset.path" in configs["overrideKeys"]
    assert "trainer.dataset_format" in configs["overrideKeys"]

    bad = client.post("/api/validate", json={"overrides": ["trainer.max_steps=-1"]}).json()
    assert bad["valid"] is False
    assert bad["errors"][0]["line"] is None or bad["errors"][0]["line"] >= 1
    assert "max_steps" in json.dumps(bad["errors"])
    good = client.post("/api/validate", json={"config": "arkor.toml", "overrides": []}).json()
    assert good == {"valid": True, "trainer": {"name": "demo", "model": good["trainer"]["model"]}}
    refused = client.post("/api/runs", json={"overrides": ["trainer.max_steps=-1"]})
    assert refused.status_code == 422
    assert refused.json()["error"]["issues"]

    started = client.post("/api/runs", json={"overrides": ["trainer.max_steps=6"]})
    assert started.status_code == 201, started.text
    job_id = started.json()["run"]["id"]

    stream = events_after(client, job_id)
    assert stream[-1]["event"] == "end"
    events = stream[:-1]
    assert [int(frame["id"]) for frame in events] == list(range(1, len(events) + 1))
    types = [frame["event"] for frame in events]
    assert types[0] == "training.started"
    assert types[-1] == "training.completed"
    logs = [frame["data"] for frame in events if frame["event"] == "training.log"]
    assert [log["step"] for log in logs if "loss" in log][-1] == 6
    assert all(isinstance(log.get("loss", 0.0), float) for log in logs)

    # a dropped connection resumes after the last event it saw: no gap, no repeat
    resumed = events_after(client, job_id, params={"after": 3})
    assert [frame["id"] for frame in resumed[:-1]] == [frame["id"] for frame in events[3:]]
    again = events_after(client, job_id, headers={**HEADERS, "Last-Event-ID": "5"})
    assert [frame["id"] for frame in again[:-1]] == [frame["id"] for frame in events[5:]]

    runs = client.get("/api/runs").json()["runs"]
    assert runs[0]["id"] == job_id
    assert runs[0]["status"] == "completed"
    assert runs[0]["step"] == 6
    assert runs[0]["maxSteps"] == 6
    assert isinstance(runs[0]["finalLoss"], float)
    assert runs[0]["durationSeconds"] >= 0
    detail = client.get(f"/api/runs/{job_id}").json()
    assert [point["step"] for point in detail["checkpoints"]] == [3, 6]
    assert detail["lastEventId"] == len(events)
    assert detail["final"] is True
    adapter = next(a for a in detail["artifacts"] if a["path"].endswith(".safetensors"))
    download = client.get(f"/api/runs/{job_id}/artifacts/{adapter['path']}")
    assert download.status_code == 200
    assert len(download.content) == adapter["size"]
    assert "attachment" in download.headers["content-disposition"]
    # the project's callbacks ran in Studio, as `arkor start` runs them
    assert (project / ".arkor" / "metrics" / f"{job_id}.jsonl").is_file()

    targets = client.get("/api/targets").json()
    assert targets["runs"][0] == {
        "id": job_id,
        "name": "demo",
        "model": targets["runs"][0]["model"],
        "status": "completed",
        "final": True,
        "checkpoints": [3, 6],
    }
    ask = {
        "target": {"kind": "checkpoint", "run": job_id, "step": 3},
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "maxTokens": 8,
        "temperature": 0,
    }
    with client.stream("POST", "/api/chat", json=ask) as answer:
        assert answer.status_code == 200
        chat = list(frames(answer.iter_lines()))
    assert chat[-1]["event"] == "done"
    assert chat[-1]["data"]["usage"]["completionTokens"] >= 1
    assert all("delta" in frame["data"] for frame in chat[:-1])
    assert len(chat) >= 2
    missing = client.post(
        "/api/chat", json={**ask, "target": {"kind": "final", "run": "job_missing"}}
    )
    assert missing.status_code == 400
    assert "job_missing" in missing.json()["error"]["message"]

    created = client.post("/api/endpoints", json={"slug": "demo-bot", "run": job_id})
    assert created.status_code == 201, created.text
    deployment = created.json()["deployment"]
    assert deployment["model"] == "demo-bot"
    assert deployment["target"]["adapter"] == {"kind": "final", "jobId": job_id}
    taken = client.post("/api/endpoints", json={"slug": "demo-bot", "run": job_id})
    assert taken.status_code == 409
    key = client.post("/api/endpoints/demo-bot/keys", json={"label": "studio"})
    assert key.status_code == 201
    plaintext = key.json()["key"]["plaintext"]
    assert plaintext.startswith("arkd_")
    listed = client.get("/api/endpoints/demo-bot/keys").text
    assert plaintext not in listed
    retarget = client.patch(
        "/api/endpoints/demo-bot", json={"run": job_id, "step": 3, "enabled": False}
    ).json()["deployment"]
    assert retarget["target"]["adapter"]["step"] == 3
    assert retarget["enabled"] is False
    key_id = key.json()["key"]["id"]
    assert client.delete(f"/api/endpoints/demo-bot/keys/{key_id}").status_code == 204
    assert client.get("/api/endpoints/demo-bot/requests").json() == {"runs": []}
    assert client.delete("/api/endpoints/demo-bot").status_code == 204
    assert client.get("/api/endpoints").json() == {"deployments": []}

    cancelled = client.post(f"/api/runs/{job_id}/cancel")
    assert cancelled.status_code == 409


def test_the_data_view_pages_rows_and_shows_what_is_learned(client: Any) -> None:
    page = client.get("/api/data", params={"offset": 2, "limit": 3}).json()
    assert page["path"] == "data/train.jsonl"
    assert page["format"] == {"type": "chat", "messages": "messages"}
    assert page["count"] >= 5
    assert [row["index"] for row in page["rows"]] == [2, 3, 4]
    assert "messages" in page["rows"][0]["row"]

    tokens = client.get("/api/data/tokens", params={"row": 1}).json()
    assert tokens["sampled"] == tokens["count"] == page["count"]
    assert sum(bin["rows"] for bin in tokens["histogram"]) == tokens["sampled"]
    assert tokens["maxLength"] == 128
    row = tokens["row"]
    assert row["index"] == 1
    assert 0 < row["learned"] < row["total"]
    assert [t["learned"] for t in row["tokens"]].count(True) == row["learned"]
    past = client.get("/api/data/tokens", params={"row": 10_000})
    assert past.status_code == 400
    assert "past the end" in past.json()["error"]["message"]


def test_the_token_histogram_samples_what_fits_one_request_and_still_shows_any_row(
    client: Any, project: Path
) -> None:
    long = "word " * 600
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"{index} {long}"},
                {"role": "assistant", "content": "ok"},
            ]
        }
        for index in range(400)
    ]
    (project / "data" / "train.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
    )
    tokens = client.get("/api/data/tokens", params={"row": 399})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["count"] == 400
    assert 0 < body["sampled"] < 400
    assert sum(bin["rows"] for bin in body["histogram"]) == body["sampled"]
    assert body["stats"]["truncated"] == body["sampled"]
    assert body["row"]["index"] == 399
    assert body["row"]["total"] > body["maxLength"]
