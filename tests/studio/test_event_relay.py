"""The run page's event stream through connections that keep breaking: every event once.

The plane and its job are real (the fake worker stands in for training); a TCP proxy
between Studio and the plane cuts each connection every few hundred bytes, often
mid-frame. The reader here acts as a browser's EventSource does: it keeps only complete
frames and reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import CloudApiClient, FileDatasetSource, JobConfig, JobCreate, ProjectState
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import running_plane, signed_in_project
from tests.utils.proxy import TcpProxy
from tests.utils.requires import need
from tests.utils.studio import LOOPBACK

need("fastapi", "Studio is a FastAPI app")

TOKEN = "relay-token"


@pytest.fixture
def plane_and_project(tmp_path: Path) -> Iterator[tuple[str, CloudApiClient, ProjectState]]:
    with (
        running_plane(tmp_path / "plane", worker_command=FAKE_WORKER) as plane,
        signed_in_project(plane.url) as (client, scope),
    ):
        yield plane.url, client, scope


def complete_frames(text: str) -> list[dict[str, str]]:
    """The frames a blank line completed; a trailing partial frame is dropped, as EventSource does."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if fields:
            frames.append(fields)
    return frames


def test_a_run_streams_every_event_once_across_cut_connections(
    project: Path, plane_and_project: tuple[str, CloudApiClient, ProjectState]
) -> None:
    from starlette.testclient import TestClient

    from arkor.sdk import Session
    from arkor.studio._app import create_app
    from arkor.studio._studio import Studio

    url, client, scope = plane_and_project
    upload = client.upload(scope, b'{"text": "x"}\n', filename="train.jsonl")
    config = JobConfig(model="tiny", dataset_source=FileDatasetSource(upload_id=upload.id))
    job = client.create_job(scope, JobCreate(name="events:40", config=config))

    with TcpProxy(url.removeprefix("http://"), drop_every=700) as proxy:
        flaky = CloudApiClient(proxy.url, client.token)
        studio = Studio(project, Session(flaky, scope, "remote", proxy.url))
        seen: list[dict[str, Any]] = []
        last: str | None = None
        ended = False
        with TestClient(create_app(studio, TOKEN), base_url=LOOPBACK) as browser:
            for _ in range(200):
                headers = {"X-Arkor-Studio-Token": TOKEN}
                if last is not None:
                    headers["Last-Event-ID"] = last
                answer = browser.get(f"/api/runs/{job.id}/events", headers=headers)
                assert answer.status_code == 200, answer.text
                for frame in complete_frames(answer.text):
                    if frame.get("event") == "end":
                        ended = True
                    elif "id" in frame and frame.get("event") != "ping":
                        last = frame["id"]
                        seen.append({"id": int(frame["id"]), **json.loads(frame["data"])})
                if ended:
                    break
        flaky.close()
    assert ended
    assert proxy.drops >= 3
    assert [event["id"] for event in seen] == list(range(1, len(seen) + 1))
    stored = client.get_job(scope, job.id).events or []
    assert [event["type"] for event in seen] == [event.type for event in stored]
    assert seen[-1]["type"] == "training.completed"
