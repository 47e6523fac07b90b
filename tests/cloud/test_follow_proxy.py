"""follow_events through a TCP proxy that keeps breaking the connection: every event once.

The plane and its jobs are real (the fake worker stands in for training only); the proxy
cuts connections mid-frame every N bytes, or all at once on demand.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from arkor.cloud import (
    AnonymousCredentials,
    CloudApiClient,
    JobEvent,
    ProjectState,
    follow_events,
)
from arkor.server import RunningPlane
from tests.cloud.test_client import submit, wait_for
from tests.utils.proxy import TcpProxy

FAST: dict[str, Any] = {"base_delay": 0.001, "max_delay": 0.01}


def through(proxy: TcpProxy, identity: AnonymousCredentials) -> CloudApiClient:
    """A client for the same plane, reached via the proxy."""
    return CloudApiClient.from_credentials(identity, via=proxy.url)


def test_every_event_once_in_order_across_many_drops(
    plane: RunningPlane,
    client: CloudApiClient,
    identity: AnonymousCredentials,
    scope: ProjectState,
) -> None:
    """A cut every 600 bytes lands mid-frame again and again; the follower loses nothing."""
    job = submit(client, scope, "events:60")
    with (
        TcpProxy(plane.url.removeprefix("http://"), drop_every=600) as proxy,
        through(proxy, identity) as flaky,
    ):
        followed = list(follow_events(flaky, scope, job.id, **FAST))
    stored = client.get_job(scope, job.id).events
    assert followed == stored
    assert [e.type for e in followed[:2]] == ["training.started", "training.log"]
    assert [getattr(e, "step", None) for e in followed[1:-1]] == list(range(1, 61))
    assert followed[-1].type == "training.completed"
    assert proxy.drops >= 20
    assert proxy.connections == proxy.drops + 1


def test_drop_everything_on_demand_while_a_job_runs(
    plane: RunningPlane,
    client: CloudApiClient,
    identity: AnonymousCredentials,
    scope: ProjectState,
) -> None:
    """The follower reconnects after each cut and resumes; no event repeats across them."""
    job = submit(client, scope, "until-cancel")
    wait_for(client, scope, job.id, "running")
    seen: list[JobEvent] = []
    started = threading.Event()
    with TcpProxy(plane.url.removeprefix("http://")) as proxy, through(proxy, identity) as flaky:

        def follow() -> None:
            for event in follow_events(flaky, scope, job.id, **FAST):
                seen.append(event)
                started.set()

        follower = threading.Thread(target=follow)
        follower.start()
        assert started.wait(10)
        for cuts in range(1, 6):
            deadline = time.monotonic() + 10
            while proxy.connections <= cuts - 1 or not proxy.drop_all():
                assert time.monotonic() < deadline, "the follower did not reconnect"
                time.sleep(0.01)
        client.cancel_job(scope, job.id)
        follower.join(20)
        assert not follower.is_alive()
    assert [event.type for event in seen] == ["training.started", "training.cancelled"]
    assert proxy.drops >= 5
    assert proxy.connections >= 6
