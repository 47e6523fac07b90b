"""Client fixtures: a real plane (its jobs run the fake worker) and fresh identities on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.cloud import (
    AnonymousCredentials,
    CloudApiClient,
    ProjectState,
    clear_deprecation_notice,
    request_anonymous_token,
)
from arkor.server import RunningPlane
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import running_plane

DATA = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    """One plane per module; every test signs up its own identity on it, so none interfere."""
    with running_plane(
        tmp_path_factory.mktemp("plane-home"),
        worker_command=FAKE_WORKER,
        ping_interval=0.2,
        follow_poll_interval=0.5,
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def no_stale_deprecation_notice() -> Iterator[None]:
    """The notice is process-wide; a test that records one must not leak it to the next."""
    clear_deprecation_notice()
    yield
    clear_deprecation_notice()


@pytest.fixture
def identity(plane: RunningPlane) -> AnonymousCredentials:
    """A new anonymous identity on ``plane`` (not stored in the credentials file)."""
    return request_anonymous_token(plane.url)


@pytest.fixture
def client(identity: AnonymousCredentials) -> Iterator[CloudApiClient]:
    with CloudApiClient.from_credentials(identity) as cloud:
        yield cloud


@pytest.fixture
def scope(client: CloudApiClient, identity: AnonymousCredentials) -> ProjectState:
    """A project ``demo`` in the identity's personal org."""
    project = client.create_project(identity.org_slug, name="Demo", slug="demo")
    return ProjectState(org_slug=identity.org_slug, project_slug="demo", project_id=project.id)


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def other_home(tmp_path: Path) -> Path:
    """A home for a second plane."""
    return tmp_path / "other-plane-home"
