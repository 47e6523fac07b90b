"""Org isolation: a caller outside the org gets 404 on every project route, never 403."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from arkor.server import RunningPlane
from tests.server.test_jobs import create
from tests.utils.plane import Caller, sign_up, upload, wait_for_status


@pytest.fixture
def outsider(plane: RunningPlane) -> Iterator[Caller]:
    identity = sign_up(plane.url, project_slug="mine")
    yield identity
    identity.close()


def routes(job_id: str, upload_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every project-scoped route, aimed at ``job_id`` where it takes one."""
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    return [
        ("GET", "/v1/jobs", {}),
        (
            "POST",
            "/v1/jobs",
            {
                "json": {
                    "name": "x",
                    "config": {
                        "model": "m",
                        "datasetSource": {"type": "file", "uploadId": upload_id},
                    },
                }
            },
        ),
        ("GET", f"/v1/jobs/{job_id}", {}),
        ("POST", f"/v1/jobs/{job_id}/cancel", {}),
        ("GET", f"/v1/jobs/{job_id}/events/stream", {}),
        ("GET", f"/v1/jobs/{job_id}/artifacts", {}),
        ("GET", f"/v1/jobs/{job_id}/artifacts/adapter/adapter_config.json", {}),
        ("POST", "/v1/uploads", {"content": b"x", "headers": {"X-Content-Sha256": "0" * 64}}),
        (
            "POST",
            "/v1/inference/chat",
            {"json": {**chat, "adapter": {"kind": "final", "jobId": job_id}, "stream": False}},
        ),
        ("POST", "/v1/data/inspect", {"json": {"model": "m", "rows": [{"text": "x"}]}}),
    ]


def test_every_route_of_another_org_is_404(caller: Caller, outsider: Caller) -> None:
    job = create(caller, "until-cancel")
    upload_id = upload(caller, b"{}\n")
    wait_for_status(caller, job["id"], {"running"})
    org = {"orgSlug": caller.org_slug}
    assert outsider.http.get("/v1/projects", params=org).status_code == 404
    assert (
        outsider.http.post("/v1/projects", params=org, json={"name": "x", "slug": "x"}).status_code
        == 404
    )
    for method, path, options in routes(job["id"], upload_id):
        answer = outsider.http.request(method, path, params=caller.scope, **options)
        assert answer.status_code == 404, (method, path, answer.text)
        assert "error" in answer.json()
    # the job was not touched: still running, and the owner can cancel it
    assert caller.http.post(f"/v1/jobs/{job['id']}/cancel", params=caller.scope).status_code == 202


def test_another_orgs_job_id_is_404_in_ones_own_project(caller: Caller, outsider: Caller) -> None:
    job = create(caller, "events:0")
    upload_id = upload(caller, b"{}\n")
    for method, path, options in routes(job["id"], upload_id):
        if path in ("/v1/jobs", "/v1/uploads", "/v1/data/inspect"):
            continue  # these name no job; in the outsider's own project they are allowed
        answer = outsider.http.request(method, path, params=outsider.scope, **options)
        assert answer.status_code == 404, (method, path, answer.text)
    # an upload id of another org is not usable either
    body = routes(job["id"], upload_id)[1][2]["json"]
    reused = outsider.http.post("/v1/jobs", params=outsider.scope, json=body)
    assert reused.status_code == 422


def test_me_lists_only_ones_own_orgs(caller: Caller, outsider: Caller) -> None:
    orgs = outsider.http.get("/v1/me").json()["orgs"]
    assert [org["slug"] for org in orgs] == [outsider.org_slug]
