"""FollowStop ends a follow from another thread at once: mid-read on a quiet stream, or mid-backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from arkor.cloud import (
    CloudApiClient,
    FollowStop,
    JobEvent,
    ProjectScope,
    ProjectState,
    follow_events,
)
from arkor.server import RunningPlane
from tests.cloud.test_client import submit, wait_for
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import QUIET, running_plane, signed_in_project


@pytest.fixture(scope="module")
def quiet_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    home = tmp_path_factory.mktemp("quiet-home")
    with running_plane(home, worker_command=FAKE_WORKER, ping_interval=QUIET, max_jobs=4) as plane:
        yield plane


@pytest.fixture
def quiet(quiet_plane: RunningPlane) -> Iterator[tuple[CloudApiClient, ProjectState]]:
    with signed_in_project(quiet_plane.url) as signed_in:
        yield signed_in


def follow_in_thread(
    stop: FollowStop, follow: Iterator[JobEvent]
) -> tuple[threading.Thread, list[JobEvent], list[BaseException]]:
    seen: list[JobEvent] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            seen.extend(follow)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen, errors


def test_stop_cuts_a_read_blocked_on_a_quiet_stream(
    quiet: tuple[CloudApiClient, ProjectState],
) -> None:
    """The job runs on and sends nothing; set() from here still ends the follow, quietly."""
    client, scope = quiet
    job = submit(client, scope, "sleep")
    wait_for(client, scope, job.id, "running")
    stop = FollowStop()
    thread, seen, errors = follow_in_thread(stop, follow_events(client, scope, job.id, stop=stop))
    deadline = time.monotonic() + 30
    while not seen:  # the worker's only event
        assert time.monotonic() < deadline, "the job's start never arrived"
        time.sleep(0.05)
    thread.join(0.5)
    assert thread.is_alive(), "the follow should be waiting for the next event"
    assert [event.type for event in seen] == ["training.started"]

    stop.set()
    thread.join(QUIET / 4)
    assert not thread.is_alive(), "set() did not cut the blocked read"
    assert errors == []
    assert client.get_job(scope, job.id, include_events=False).job.status == "running"
    client.cancel_job(scope, job.id)


def test_stop_wakes_the_wait_between_reconnects(closed_url: str) -> None:
    with CloudApiClient(closed_url, "token") as client:
        stop = FollowStop()
        follow = follow_events(
            client, ProjectScope(org_slug="o", project_slug="p"), "job", base_delay=QUIET, stop=stop
        )
        thread, seen, errors = follow_in_thread(stop, follow)
        thread.join(0.5)
        assert thread.is_alive(), "the follow should be waiting to reconnect"
        stop.set()
        thread.join(QUIET / 4)
    assert not thread.is_alive(), "set() did not wake the backoff"
    assert (seen, errors) == ([], [])


def test_a_stop_set_before_the_follow_starts_connects_nowhere() -> None:
    stop = FollowStop()
    stop.set()
    with CloudApiClient("http://127.0.0.1:9", "token") as client:
        assert (
            list(
                follow_events(
                    client, ProjectScope(org_slug="o", project_slug="p"), "job", stop=stop
                )
            )
            == []
        )
