"""Studio's evaluation routes on a real run: the tiny model trains with ``[trainer.eval]`` on
the embedded plane, and the run page's API gives its eval with the table and the rows
where base and adapter answered differently, then runs it again on demand."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.requires import need
from tests.utils.studio import LOOPBACK, studio_for, template_project

need("fastapi", "Studio is a FastAPI app")
need("torch", "the run trains the tiny model for real")

pytestmark = pytest.mark.slow
TOKEN = "eval-token"
HEADERS = {"X-Arkor-Studio-Token": TOKEN}
CUSTOM = "demo.metrics:nonempty"
METRICS_MODULE = '''"""A custom eval metric of the project."""


def nonempty(prediction: str, reference: str, row: dict) -> float:
    """1 when the model said anything at all."""
    return 1.0 if prediction.strip() else 0.0
'''
LEARNING_RATE = "0.001"
"""High enough that 6 steps move most of the tiny model's greedy answers away from its base's."""


def eval_project(project: Path, tiny_model: Path) -> Path:
    """The fast template project, evaluated with two built-ins and a custom metric."""
    template_project(project, tiny_model)
    (project / "demo" / "metrics.py").write_text(METRICS_MODULE, encoding="utf-8")
    config = project / "arkor.toml"
    text = config.read_text(encoding="utf-8")
    for old, new in {
        'metrics = ["rouge_l"]': f'metrics = ["rouge_l", "exact_match", "{CUSTOM}"]',
        "learning_rate = 0.0002": f"learning_rate = {LEARNING_RATE}",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    return project


@pytest.fixture
def client(project: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from arkor.studio._app import create_app

    monkeypatch.setenv("ARKOR_PORT", "0")
    eval_project(project, tiny_model)
    with (
        studio_for(project) as studio,
        TestClient(create_app(studio, TOKEN), base_url=LOOPBACK, headers=HEADERS) as client,
    ):
        yield client


def frames(lines: Iterator[str]) -> list[dict[str, Any]]:
    """Event-stream frames as dicts of their fields (data decoded from JSON)."""
    found: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    for line in lines:
        if not line:
            if frame:
                found.append(frame)
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame[name] = json.loads(value) if name == "data" else value
    if frame:
        found.append(frame)
    return found


def run_to_the_end(client: Any) -> str:
    """Start the project's run from Studio and follow its stream until it ends."""
    started = client.post("/api/runs", json={})
    assert started.status_code == 201, started.text
    job_id: str = started.json()["run"]["id"]
    with client.stream("GET", f"/api/runs/{job_id}/events") as answer:
        types = [frame.get("event") for frame in frames(answer.iter_lines())]
    assert types[-2:] == ["training.completed", "end"], types
    assert types.index("eval.completed") < types.index("training.completed")
    return job_id


def rerun(client: Any, job_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", f"/api/runs/{job_id}/evals", json=body) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return frames(answer.iter_lines())


def test_a_run_s_eval_comes_with_its_table_and_the_rows_where_the_answers_differ(
    client: Any,
) -> None:
    from arkor.cloud import EvalCompleted
    from arkor.evals import table_rows

    job_id = run_to_the_end(client)
    answer = client.get(f"/api/runs/{job_id}/evals")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["configured"] is True
    assert body["status"] == "completed"
    [final] = body["evals"]
    assert final["final"] is True
    assert final["requested"] is False
    assert final["step"] == 6
    assert "error" not in final
    samples = final["samples"]
    assert final["rows"] == len(samples) == final["heldOutRows"]  # 10 % of 89 rows, under 32
    assert 0 < final["rows"] < 20
    # too few rows to trust a percentage: said in words, and counts instead of percentages
    assert any(f"Only {final['rows']} held-out rows" in text for text in final["warnings"])

    # the table is the one every surface prints, of the event the plane keeps
    stored = [
        event
        for event in client.get(f"/api/runs/{job_id}").json()["events"]
        if event["type"] == "eval.completed"
    ]
    assert len(stored) == 1
    builtin = [{**row.__dict__} for row in table_rows(EvalCompleted.model_validate(stored[0]))]
    assert [row["metric"] for row in builtin][:2] == ["rouge_l", "exact_match"]
    assert final["table"][: len(builtin)] == builtin
    assert all("(few rows)" in row["change"] for row in final["table"])

    # the rows where base and adapter answered differently, by index into the samples
    differing = final["differing"]
    assert differing, "6 steps at a high learning rate change some answers"
    assert differing == [
        index
        for index, sample in enumerate(samples)
        if sample["base"].strip() != sample["adapter"].strip()
    ]
    first = samples[differing[0]]
    assert first["prompt"][-1]["role"] == "user"
    assert set(first["scores"]) == {"rouge_l", "exact_match"}
    assert first["reference"]

    # the project's custom metric is scored by Studio, which has the project's code
    assert CUSTOM not in [metric["name"] for metric in stored[0]["metrics"]]
    assert [row["metric"] for row in final["table"]][len(builtin) :] == [CUSTOM]
    assert re.fullmatch(rf"\d+/{final['rows']}", final["table"][-1]["adapter"])
    assert body["metricsNote"] is None

    # run again on the same rows: the same numbers; a checkpoint on fewer rows
    again = rerun(client, job_id, {})
    assert [frame["event"] for frame in again][-1] == "eval", again
    progress = [frame["data"] for frame in again if frame["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    repeated = again[-1]["data"]
    assert repeated["requested"] is True
    assert repeated["table"] == final["table"]
    assert repeated["differing"] == differing
    checkpoint = rerun(client, job_id, {"checkpoint": 3, "rows": 4})[-1]["data"]
    assert (checkpoint["checkpoint"], checkpoint["step"], checkpoint["rows"]) == (3, 3, 4)
    listed = client.get(f"/api/runs/{job_id}/evals").json()["evals"]
    assert [(e["requested"], e.get("checkpoint")) for e in listed] == [
        (False, None),
        (True, None),
        (True, 3),
    ]

    # the plane's refusals answer as JSON errors, before any frame
    unknown = client.post(f"/api/runs/{job_id}/evals", json={"checkpoint": 99})
    assert unknown.status_code == 404, unknown.text
    assert "99" in unknown.json()["error"]["message"]
    bad = client.post(f"/api/runs/{job_id}/evals", json={"rows": 0})
    assert bad.status_code == 422
    missing = client.get("/api/runs/job_missing/evals")
    assert missing.status_code == 404
