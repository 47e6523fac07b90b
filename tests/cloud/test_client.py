"""Every CloudApiClient route against a real plane, and how its answers map to errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from arkor._version import __version__
from arkor.cloud import (
    AnonymousCredentials,
    AuthError,
    CloudApiClient,
    CloudApiError,
    ConflictError,
    FileDatasetSource,
    JobConfig,
    JobCreate,
    NotFoundError,
    PlaneUnreachableError,
    ProjectScope,
    ProjectState,
    TrainingJob,
    UpgradeRequiredError,
    deprecation_notice,
    follow_events,
    request_anonymous_token,
)
from arkor.server import RunningPlane
from tests.cloud.conftest import DATA
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import running_plane
from tests.utils.proxy import TcpProxy


def submit(
    client: CloudApiClient, scope: ProjectScope, name: str, key: str | None = None
) -> TrainingJob:
    """A job the fake worker acts out by its name (``events:3``, ``until-cancel``, ...)."""
    upload = client.upload(scope, DATA, filename="train.jsonl")
    config = JobConfig(model="tiny", dataset_source=FileDatasetSource(upload_id=upload.id))
    return client.create_job(scope, JobCreate(name=name, config=config), idempotency_key=key)


def wait_for(client: CloudApiClient, scope: ProjectScope, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while client.get_job(scope, job_id, include_events=False).job.status != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        time.sleep(0.05)


def request_heads(recorded: bytes) -> list[tuple[str, dict[str, str]]]:
    """``(request line, headers)`` of every HTTP request in raw bytes a proxy recorded."""
    heads = []
    for match in re.finditer(rb"((?:GET|POST) \S+ HTTP/1\.1)\r\n(.*?)\r\n\r\n", recorded, re.S):
        lines = match.group(2).decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        heads.append((match.group(1).decode(), headers))
    return heads


# --- auth and identity -------------------------------------------------------------------


def test_auth_config_anonymous_token_and_me(plane: RunningPlane) -> None:
    with CloudApiClient(plane.url) as client:
        config = client.cli_config()
        minted = client.anonymous_token()
    assert config.anonymous is True
    assert config.oauth is None
    assert config.plane_id is not None and config.plane_id.startswith("plane_")
    assert minted.kind == "cli"
    assert minted.token_id is not None and minted.token_id.startswith("tok_")
    with CloudApiClient(plane.url, minted.token) as client:
        me = client.me()
    assert me.user.anonymous_id == minted.anonymous_id
    assert [org.slug for org in me.orgs] == [minted.personal_org.slug]


def test_headers_sent_on_every_request(plane: RunningPlane) -> None:
    """``X-Arkor-Client`` always; the bearer token everywhere but the bootstrap routes."""
    with TcpProxy(plane.url.removeprefix("http://")) as proxy:
        with CloudApiClient(proxy.url) as client:
            client.cli_config()
            token = client.anonymous_token().token
        with CloudApiClient(proxy.url, token) as client:
            client.me()
            client.cli_config()
        heads = request_heads(bytes(proxy.received))
    assert [line for line, _ in heads] == [
        "GET /v1/auth/cli/config HTTP/1.1",
        "POST /v1/auth/anonymous HTTP/1.1",
        "GET /v1/me HTTP/1.1",
        "GET /v1/auth/cli/config HTTP/1.1",
    ]
    for _, headers in heads:
        assert headers["x-arkor-client"] == f"arkor-python/{__version__}"
    assert [headers.get("authorization") for _, headers in heads] == [
        None,
        None,
        f"Bearer {token}",
        None,
    ]


def test_tokens_list_and_revoke(plane: RunningPlane, client: CloudApiClient) -> None:
    [only] = client.list_tokens().tokens
    assert only.current is True and only.id.startswith("tok_")
    with CloudApiClient(plane.url) as anonymous:
        stranger = anonymous.anonymous_token().token
    with CloudApiClient(plane.url, stranger) as other, pytest.raises(NotFoundError):
        other.revoke_token(only.id)  # another identity's token is not found, not revoked
    client.revoke_token(only.id)
    with pytest.raises(AuthError):
        client.me()


def test_a_wrong_home_key_is_refused(plane: RunningPlane) -> None:
    with CloudApiClient(plane.url) as client, pytest.raises(AuthError) as raised:
        client.anonymous_token(home_key="not-the-key")
    assert raised.value.status == 403
    assert "home key does not match" in raised.value.message


def test_a_token_the_plane_does_not_know_is_an_auth_error(plane: RunningPlane) -> None:
    with CloudApiClient(plane.url, "not-a-token") as client, pytest.raises(AuthError) as raised:
        client.me()
    assert raised.value.status == 401
    assert "not valid on this control plane" in raised.value.message
    assert "arkor login" in str(raised.value)
    assert raised.value.body == {"error": raised.value.message}


def test_unreachable_plane(closed_url: str) -> None:
    with (
        CloudApiClient(closed_url, retries=1, retry_delay=0.01) as client,
        pytest.raises(PlaneUnreachableError) as raised,
    ):
        client.cli_config()
    assert raised.value.status is None
    assert closed_url in str(raised.value)
    assert "arkor serve" in str(raised.value)


# --- projects ----------------------------------------------------------------------------


def test_projects_list_create_and_conflict(
    client: CloudApiClient, identity: AnonymousCredentials
) -> None:
    assert client.list_projects(identity.org_slug).projects == []
    created = client.create_project(identity.org_slug, name="My Bot", slug="my-bot")
    listed = client.list_projects(identity.org_slug)
    assert listed.org.slug == identity.org_slug
    assert listed.projects == [created]
    assert (created.name, created.slug) == ("My Bot", "my-bot")
    with pytest.raises(ConflictError) as raised:
        client.create_project(identity.org_slug, name="Again", slug="my-bot")
    assert raised.value.status == 409
    assert "my-bot" in raised.value.message


def test_another_org_is_not_found(plane: RunningPlane, client: CloudApiClient) -> None:
    """A caller outside the org gets 404, as if it did not exist."""
    stranger = request_anonymous_token(plane.url)
    with pytest.raises(NotFoundError) as raised:
        client.list_projects(stranger.org_slug)
    assert raised.value.status == 404


# --- uploads and jobs --------------------------------------------------------------------


def test_upload_is_stored_once(client: CloudApiClient, scope: ProjectState) -> None:
    first = client.upload(scope, DATA)
    again = client.upload(scope, DATA, filename="other.jsonl")
    assert first == again
    assert first.size == len(DATA)
    assert client.upload(scope, DATA + b"\n").id != first.id


def test_unchanged_data_is_not_sent_twice(
    plane: RunningPlane, identity: AnonymousCredentials, scope: ProjectState
) -> None:
    """Uploads are content-addressed: the second upload of the same bytes sends only the digest."""
    payload = b'{"text": "' + b"x" * 50_000 + b'"}\n'
    with (
        TcpProxy(plane.url.removeprefix("http://")) as proxy,
        CloudApiClient(proxy.url, identity.token) as client,
    ):
        first = client.upload(scope, payload)
        sent_once = len(proxy.received)
        again = client.upload(scope, payload)
        sent_twice = len(proxy.received) - sent_once
    assert first == again
    assert sent_once > len(payload)
    assert sent_twice < 2_000, "the second upload asked by digest instead of sending the bytes"


def test_job_lifecycle_and_events(client: CloudApiClient, scope: ProjectState) -> None:
    job = submit(client, scope, "events:3")
    assert job.status == "queued"
    assert job.config.dataset_source.type == "file"
    events = list(follow_events(client, scope, job.id))
    assert [event.type for event in events] == [
        "training.started",
        "training.log",
        "training.log",
        "training.log",
        "training.completed",
    ]
    fetched = client.get_job(scope, job.id)
    assert fetched.job.status == "completed"
    assert fetched.events == events
    assert client.get_job(scope, job.id, include_events=False).events is None
    assert list(follow_events(client, scope, job.id, last_event_id=3)) == events[3:]


def test_idempotency_key_returns_the_same_job(client: CloudApiClient, scope: ProjectState) -> None:
    first = submit(client, scope, "events:0", key="start-1")
    again = submit(client, scope, "events:0", key="start-1")
    fresh = submit(client, scope, "events:0", key="start-2")
    assert again.id == first.id
    assert fresh.id != first.id
    assert [job.id for job in client.list_jobs(scope)] == [fresh.id, first.id]


def test_cancel_then_conflict(client: CloudApiClient, scope: ProjectState) -> None:
    job = submit(client, scope, "until-cancel")
    wait_for(client, scope, job.id, "running")
    client.cancel_job(scope, job.id)
    types = [event.type for event in follow_events(client, scope, job.id)]
    assert types == ["training.started", "training.cancelled"]
    with pytest.raises(ConflictError, match="already ended"):
        client.cancel_job(scope, job.id)


def test_unknown_job_is_not_found(client: CloudApiClient, scope: ProjectState) -> None:
    with pytest.raises(NotFoundError, match="job_missing"):
        client.get_job(scope, "job_missing")
    with pytest.raises(NotFoundError):
        client.cancel_job(scope, "job_missing")


def test_a_bad_request_keeps_the_planes_message(
    client: CloudApiClient, scope: ProjectState
) -> None:
    config = JobConfig(model="tiny", dataset_source=FileDatasetSource(upload_id="upl_nope"))
    with pytest.raises(CloudApiError) as raised:
        client.create_job(scope, JobCreate(name="x", config=config))
    assert type(raised.value) is CloudApiError
    assert raised.value.status == 422
    assert "upl_nope" in raised.value.message


# --- artifacts ---------------------------------------------------------------------------


def test_artifacts_list_and_download(
    plane: RunningPlane, client: CloudApiClient, scope: ProjectState, tmp_path: Path
) -> None:
    """Files a worker wrote under the job's artifact folder are listed and downloaded."""
    job = submit(client, scope, "events:0")
    list(follow_events(client, scope, job.id))
    root = plane.settings.artifacts_dir / job.id
    (root / "adapter").mkdir(parents=True)
    payload = bytes(range(256)) * 1000
    (root / "adapter" / "adapter model.bin").write_bytes(payload)
    (root / "metrics.json").write_text('{"loss": 0.5}')

    listed = client.list_artifacts(scope, job.id)
    assert [(a.path, a.size) for a in listed] == [
        ("adapter/adapter model.bin", len(payload)),
        ("metrics.json", 13),
    ]
    target = tmp_path / "downloads" / "adapter.bin"
    assert client.download_artifact(scope, job.id, "adapter/adapter model.bin", target) == target
    assert target.read_bytes() == payload
    with pytest.raises(NotFoundError):
        client.download_artifact(scope, job.id, "missing.bin", target.with_name("missing.bin"))
    assert list(target.parent.iterdir()) == [target]  # no partial file left


# --- the version gate --------------------------------------------------------------------


def test_upgrade_required(other_home: Path, tmp_path: Path) -> None:
    """426 is its own error, names the minimum and says how to upgrade; streams fail fast."""
    with running_plane(other_home, worker_command=FAKE_WORKER, min_client_version="99.0") as gated:
        with CloudApiClient(gated.url) as client, pytest.raises(UpgradeRequiredError) as raised:
            client.me()
        scope = ProjectScope(org_slug="o", project_slug="p")
        with CloudApiClient(gated.url, "t") as client, pytest.raises(UpgradeRequiredError):
            list(follow_events(client, scope, "job", sleep=pytest.fail))
    error = raised.value
    assert error.status == 426
    assert error.min_version == "99.0"
    assert "pip install" in str(error)


def test_deprecation_notice_is_recorded(other_home: Path) -> None:
    with running_plane(
        other_home,
        worker_command=FAKE_WORKER,
        deprecated_below="99.0",
        sunset="Wed, 01 Jul 2026 00:00:00 GMT",
    ) as old:
        assert deprecation_notice() is None
        with CloudApiClient(old.url) as client:
            client.cli_config()
    notice = deprecation_notice()
    assert notice is not None
    assert notice.startswith(f"{old.url}: arkor {__version__} is deprecated")
    assert "99.0" in notice
    assert "Support ends Wed, 01 Jul 2026 00:00:00 GMT." in notice


def test_a_gateway_error_is_retried_and_its_text_kept() -> None:
    """A proxy's HTML 502 page is retried, then becomes a readable CloudApiError."""
    calls: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(502, text="<html>Bad gateway</html>")

    with httpx.Client(transport=httpx.MockTransport(gateway)) as http:
        client = CloudApiClient("http://gateway.test", http=http, retries=1, retry_delay=0.01)
        with pytest.raises(CloudApiError) as raised:
            client.cli_config()
    assert calls == ["/v1/auth/cli/config"] * 2
    assert raised.value.status == 502
    assert raised.value.message == "Bad Gateway: <html>Bad gateway</html>"
