"""The plane's capture route and summary, and the CLI sending there (queue included)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor._home import arkor_home
from arkor.cloud import request_anonymous_token
from arkor.cloud._credentials import HOME_KEY_FILENAME, read_home_key
from arkor.server import RunningPlane
from arkor.server.routes.telemetry import BURST, MAX_EVENTS
from tests.telemetry.conftest import wait_until
from tests.utils.cli import CliRunner
from tests.utils.plane import client_headers, running_plane, sign_up
from tests.utils.projects import minimal_project


@pytest.fixture
def plane() -> Iterator[RunningPlane]:
    """A plane serving this test's home, as `arkor serve` would."""
    with running_plane(arkor_home()) as served:
        yield served


def event(command: str = "build", **properties: Any) -> dict[str, Any]:
    return {
        "event": "command",
        "distinct_id": "install-1",
        "uuid": str(uuid.uuid4()),
        "timestamp": "2026-01-01T00:00:00+00:00",
        "properties": {"command": command, "exit_code": 0, "arkor_version": "0.1.0", **properties},
    }


def stored(plane: RunningPlane) -> list[sqlite3.Row]:
    with sqlite3.connect(plane.settings.database_path) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute("SELECT * FROM telemetry_events ORDER BY seq").fetchall()


def owner_token(plane: RunningPlane) -> str:
    """A token of the identity that owns the plane's home (signed in with its home key)."""
    found = read_home_key(plane.settings.state_dir / HOME_KEY_FILENAME)
    if found is None:  # the key is written when the plane is first asked for its config
        httpx.get(f"{plane.url}/v1/auth/cli/config").raise_for_status()
        found = read_home_key(plane.settings.state_dir / HOME_KEY_FILENAME)
    assert found is not None
    return request_anonymous_token(plane.url, home_key=found[1]).token


def test_the_capture_route_stores_posthog_batches_and_single_events(plane: RunningPlane) -> None:
    first = event("build", flags=["--json"], path="/home/someone/project", model="secret/model")
    answer = httpx.post(
        f"{plane.url}/v1/telemetry/batch/", json={"api_key": "k", "batch": [first, event("start")]}
    )
    assert answer.status_code == 200 and answer.json() == {"status": 1}
    again = httpx.post(f"{plane.url}/v1/telemetry/batch/", json={"api_key": "k", "batch": [first]})
    assert again.status_code == 200  # a resend (same uuid) is stored once
    single = {"api_key": "k", **event("validate")}
    assert httpx.post(f"{plane.url}/v1/telemetry/capture/", json=single).status_code == 200
    rows = stored(plane)
    assert [row["command"] for row in rows] == ["build", "start", "validate"]
    kept = json.loads(rows[0]["properties"])
    assert kept == {
        "command": "build",
        "exit_code": 0,
        "arkor_version": "0.1.0",
        "flags": ["--json"],
    }


def test_the_capture_route_caps_events_bodies_and_callers(tmp_path: Path) -> None:
    with running_plane(tmp_path / "home", max_body_bytes=64 * 1024) as plane:
        url = f"{plane.url}/v1/telemetry/batch/"
        too_many = httpx.post(url, json={"batch": [event() for _ in range(MAX_EVENTS + 1)]})
        assert too_many.status_code == 422
        too_big = httpx.post(url, json={"batch": [event(flags=["x" * 70_000])]})
        assert too_big.status_code == 413
        answers = [httpx.post(url, json={"batch": [event()]}) for _ in range(BURST + 5)]
        limited = [answer for answer in answers if answer.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
        assert {answer.status_code for answer in answers} == {200, 429}


def test_the_summary_is_for_the_planes_owner_only(plane: RunningPlane) -> None:
    batch = [event("build"), event("build"), event("start", exit_code=1), event("jobs list")]
    batch[-1]["distinct_id"] = "install-2"
    httpx.post(f"{plane.url}/v1/telemetry/batch/", json={"batch": batch}).raise_for_status()
    summary_url = f"{plane.url}/v1/telemetry/summary"
    owner = httpx.get(summary_url, headers=client_headers(owner_token(plane)))
    assert owner.status_code == 200, owner.text
    body = owner.json()
    assert body["days"] == 30 and body["events"] == 4 and body["installs"] == 2
    assert body["commands"][0] == {"value": "build", "count": 2}
    assert {row["value"]: row["count"] for row in body["exitCodes"]} == {0: 3, 1: 1}
    assert body["arkorVersions"] == [{"value": "0.1.0", "count": 4}]
    other = sign_up(plane.url, project_slug=None)
    try:
        assert other.http.get("/v1/telemetry/summary").status_code == 404
    finally:
        other.close()
    assert httpx.get(summary_url).status_code == 401


def test_a_plane_less_command_queues_and_the_next_plane_command_sends_both(
    project: Path,
    cli: CliRunner,
    telemetry_on: None,
    plane: RunningPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    minimal_project(project)
    assert cli("validate").exit_code == 0
    queue = arkor_home() / "telemetry-queue.jsonl"
    assert len(queue.read_text().splitlines()) == 1
    assert stored(plane) == []
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
    result = cli("whoami", "--json")
    assert result.exit_code == 0, result.stderr
    wait_until(lambda: len(stored(plane)) == 2, "the sender to reach the plane")
    assert [row["command"] for row in stored(plane)] == ["validate", "whoami"]
    assert not queue.exists()
    install = (arkor_home() / "telemetry-id").read_text().strip()
    assert {row["distinct_id"] for row in stored(plane)} == {install}
    summary = httpx.get(
        f"{plane.url}/v1/telemetry/summary", headers=client_headers(owner_token(plane))
    ).json()
    assert summary["events"] == 2 and summary["installs"] == 1
