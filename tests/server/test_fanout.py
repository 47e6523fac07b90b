"""Fan-out: many live followers of one job each get every event once, in order.

Events reach live followers through the job's in-memory feed, not a database read per
follower per event; the feed must never skip or repeat one, whatever the followers'
timing. How fast the writer goes with watchers is measured by ``bench/soak.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from arkor.server import _store as store
from arkor.server._events import FEED_FRAMES, Feed, FrameBatch
from tests.server.test_jobs import create
from tests.utils.plane import Caller, wait_for_status

EVENTS = 400


async def follow_all(caller: Caller, job_id: str, watchers: int) -> list[list[tuple[int, int]]]:
    """Open ``watchers`` streams of the (queued) job, let it run, and read each to its end.

    Each stream gives (event id, step) for every event, step 0 where there is none.
    """
    path = f"/v1/jobs/{job_id}/events/stream"
    limits = httpx.Limits(max_connections=watchers + 2)
    async with httpx.AsyncClient(
        base_url=caller.url, headers=dict(caller.http.headers), timeout=60, limits=limits
    ) as http:
        opened = [asyncio.Event() for _ in range(watchers)]

        async def watch(opened: asyncio.Event) -> list[tuple[int, int]]:
            seen: list[tuple[int, int]] = []
            event_id = 0
            async with http.stream("GET", path, params=caller.scope) as response:
                assert response.status_code == 200
                opened.set()
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: ") and event_id:
                        seen.append((event_id, json.loads(line[6:]).get("step", 0)))
                        event_id = 0
                    elif line == "event: end":
                        break
            return seen

        tasks = [asyncio.create_task(watch(event)) for event in opened]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 60)
        blocker = caller.http.get("/v1/jobs", params=caller.scope).json()["jobs"][-1]
        assert blocker["name"] == "until-cancel"
        caller.http.post(f"/v1/jobs/{blocker['id']}/cancel", params=caller.scope)
        return await asyncio.wait_for(asyncio.gather(*tasks), 120)


@pytest.mark.parametrize("watchers", [0, 40])
def test_every_watcher_gets_every_event_once_in_order(caller: Caller, watchers: int) -> None:
    create(caller, "until-cancel")  # holds the queue until every watcher is attached
    job = create(caller, f"events:{EVENTS}")
    streams = asyncio.run(follow_all(caller, job["id"], watchers))
    wait_for_status(caller, job["id"], {"completed"})
    expected = [(1, 0), *((n + 1, n) for n in range(1, EVENTS + 1)), (EVENTS + 2, 0)]
    assert len(streams) == watchers
    for seen in streams:
        assert seen == expected
    stored = caller.http.get(f"/v1/jobs/{job['id']}", params=caller.scope).json()["events"]
    assert [event.get("step", 0) for event in stored] == [step for _, step in expected]


def test_live_watchers_do_not_read_the_database_per_event(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each watcher reads the database to catch up, and on a quiet poll; never per event."""
    reads = 0
    frames_after = store.frames_after

    def counted(**kwargs: Any) -> FrameBatch | None:
        nonlocal reads
        reads += 1
        return frames_after(**kwargs)

    monkeypatch.setattr(store, "frames_after", counted)
    watchers = 20
    create(caller, "until-cancel")
    job = create(caller, f"events:{EVENTS}")
    streams = asyncio.run(follow_all(caller, job["id"], watchers))
    assert all(len(seen) == EVENTS + 2 for seen in streams)
    # catching up and quiet polls (while the first job holds the queue) take a few each;
    # a read per event and watcher, even gathered, would take thousands
    assert reads < watchers * EVENTS // 10, f"{reads} reads: {EVENTS} events, {watchers} watchers"


def frame(event_id: int) -> str:
    return f"id: {event_id}\nevent: training.log\ndata: {{}}\n\n"


def test_a_feed_gives_what_follows_a_position_or_sends_the_reader_to_the_database() -> None:
    async def check() -> None:
        feed = Feed()
        assert feed.read(0) is None, "an empty feed can't vouch for anything"
        for event_id in (5, 6, 7):
            feed.add(event_id, frame(event_id), terminal=False)
        assert feed.read(3) is None, "event 4 is not in the feed"
        assert feed.read(4) == (frame(5) + frame(6) + frame(7), 7, False)
        assert feed.read(6) == (frame(7), 7, False)
        assert feed.read(7) == ("", 7, False), "caught up: nothing new yet"
        signal = feed.signal
        feed.add(8, frame(8), terminal=True)
        assert signal.is_set() and not feed.signal.is_set()
        assert feed.read(7) == (frame(8), 8, True)

        feed.add(10, frame(10), terminal=False)  # 9 was stored by someone else
        assert feed.read(8) is None
        feed.add(11, frame(11), terminal=False)
        assert feed.read(10) == (frame(11), 11, False)
        feed.add(11, None, terminal=False)  # a change announced without its frame
        assert feed.read(10) is None

    asyncio.run(check())


def test_a_long_feed_keeps_its_newest_frames() -> None:
    async def check() -> None:
        feed = Feed()
        for event_id in range(1, FEED_FRAMES + 2):
            feed.add(event_id, frame(event_id), terminal=False)
        assert len(feed.frames) <= FEED_FRAMES
        assert feed.read(0) is None, "the oldest frames were dropped: read the database"
        newest = FEED_FRAMES + 1
        assert feed.read(newest - 1) == (frame(newest), newest, False)

    asyncio.run(check())
