"""A real control plane for tests: uvicorn in a thread on 127.0.0.1:0 with its own home.

Nothing is mocked: callers talk HTTP to the same app ``arkor serve`` runs. Reused by the
server, client and SDK tests.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx

from arkor._version import __version__
from arkor.cloud import CloudApiClient, ProjectState, request_anonymous_token
from arkor.server import RunningPlane, Settings, load_settings, run_in_thread

QUESTIONS = {
    "what color is the sky?": "blue",
    "what color is grass?": "green",
    "what is one plus one?": "two",
    "say hello": "hello world",
    "capital of france?": "paris",
    "capital of spain?": "madrid",
}


def toy_dataset(repeat: int = 3) -> bytes:
    """A small chat dataset as JSON lines: fixed answers a tiny model can learn."""
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for _ in range(repeat)
        for q, a in QUESTIONS.items()
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def plane_settings(home: Path, **overrides: Any) -> Settings:
    """The settings a plane reads from an environment with only ``ARKOR_HOME=home``, overridden."""
    return dataclasses.replace(load_settings({"ARKOR_HOME": str(home)}), **overrides)


@contextmanager
def running_plane(home: Path, **overrides: Any) -> Iterator[RunningPlane]:
    """A plane serving ``home`` for the duration of the block."""
    plane = run_in_thread(plane_settings(home, **overrides))
    try:
        yield plane
    finally:
        plane.stop()


QUIET = 120.0
"""The ping interval of a quiet plane: a read blocked on its stream would wait this long."""


@contextmanager
def signed_in_project(url: str) -> Iterator[tuple[CloudApiClient, ProjectState]]:
    """A client of a new anonymous identity on ``url``, and its new project ``demo``."""
    identity = request_anonymous_token(url)
    with CloudApiClient.from_credentials(identity) as client:
        project = client.create_project(identity.org_slug, name="Demo", slug="demo")
        yield (
            client,
            ProjectState(org_slug=identity.org_slug, project_slug="demo", project_id=project.id),
        )


@dataclass
class Caller:
    """One identity on a plane: an httpx client sending its token and the client header."""

    url: str
    token: str
    org_slug: str
    http: httpx.Client
    project_slug: str = "demo"

    @property
    def scope(self) -> dict[str, str]:
        return {"orgSlug": self.org_slug, "projectSlug": self.project_slug}

    def close(self) -> None:
        self.http.close()


def client_headers(token: str | None = None, version: str = __version__) -> dict[str, str]:
    headers = {"X-Arkor-Client": f"arkor-python/{version}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def sign_up(url: str, *, project_slug: str | None = "demo") -> Caller:
    """A new anonymous identity with (unless ``project_slug`` is None) a project."""
    answer = httpx.post(f"{url}/v1/auth/anonymous", json={"kind": "cli"}, headers=client_headers())
    answer.raise_for_status()
    body = answer.json()
    http = httpx.Client(base_url=url, headers=client_headers(body["token"]), timeout=30)
    caller = Caller(url, body["token"], body["personalOrg"]["slug"], http)
    if project_slug is not None:
        created = http.post(
            "/v1/projects",
            params={"orgSlug": caller.org_slug},
            json={"name": project_slug, "slug": project_slug},
        )
        created.raise_for_status()
        caller.project_slug = project_slug
    return caller


def upload(caller: Caller, data: bytes, name: str = "train.jsonl") -> str:
    """Upload ``data`` to the caller's project; return the upload id."""
    answer = caller.http.post(
        "/v1/uploads",
        params=caller.scope,
        content=data,
        headers={"X-Content-Sha256": sha256(data).hexdigest(), "X-Filename": name},
    )
    answer.raise_for_status()
    upload_id: str = answer.json()["upload"]["id"]
    return upload_id


def tiny_job(model: Path, upload_id: str, **overrides: Any) -> dict[str, Any]:
    """A job body that trains ``model`` on an uploaded file for a few fast steps."""
    config: dict[str, Any] = {
        "model": str(model),
        "datasetSource": {"type": "file", "uploadId": upload_id},
        "maxSteps": 4,
        "learningRate": 5e-3,
        "batchSize": 4,
        "loggingSteps": 1,
        "saveSteps": 2,
        "loraR": 4,
        "loraAlpha": 8,
        "maxLength": 64,
        "seed": 1,
    }
    return {"name": "tiny", "config": {**config, **overrides}}


def wait_for_status(
    caller: Caller, job_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the job until its status is one of ``statuses``; return the job."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = caller.http.get(
            f"/v1/jobs/{job_id}", params={**caller.scope, "events": "false"}
        ).json()["job"]
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is still {job['status']}, not in {statuses}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Frame:
    """One server-sent event."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def sse_frames(lines: Iterator[str]) -> Iterator[Frame]:
    """Parse server-sent events from a stream of lines (as ``httpx.Response.iter_lines``)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                yield Frame(
                    fields.get("event", "message"), fields.get("data", ""), fields.get("id")
                )
                fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
