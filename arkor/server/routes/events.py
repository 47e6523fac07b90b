"""A job's event stream as Server-Sent Events: replay after ``Last-Event-ID``, then follow.

Events are stored as the SSE frames they are streamed as (see ``_events.frame``) and sent
as stored, in batches, so a replay costs one query per batch and formats nothing.
Live followers take new events from the job's in-memory feed (see ``_events``), reading
the database only for what the feed lacks and every quiet ``follow_poll_interval`` (events
another plane stored), with ``event: ping`` after ``ping_interval`` of silence. After the
terminal event comes ``event: end``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from arkor.cloud import MAX_INT
from arkor.server import _store as store
from arkor.server._db import in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError
from arkor.server._events import END_FRAME, PING_FRAME
from arkor.server._plane import Plane
from arkor.server.deps import JobDep, PlaneDep

router = APIRouter(prefix="/v1/jobs", tags=["events"], responses=SCOPED_ERRORS)

_BATCH = 2000
_GATHER_PER_FOLLOWER = 0.002
_GATHER_MAX = 0.2
"""After a live write, a follower of a job many follow waits this long (per follower, at
most ``_GATHER_MAX`` seconds) before the next, so fan-out costs writes per interval, not
per event, and the writer's requests are not queued behind them."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/{job_id}/events/stream", response_class=StreamingResponse)
async def stream_events(
    plane: PlaneDep,
    job: JobDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Replay the events after this event id."),
    ] = None,
    after: Annotated[
        str | None,
        Query(description="Like Last-Event-ID, for clients that can't set headers."),
    ] = None,
) -> StreamingResponse:
    """The job's events after a position (checked before the stream starts), then live ones."""
    start = _position("after", after) if after is not None else 0
    if last_event_id:
        start = _position("Last-Event-ID", last_event_id)
    return StreamingResponse(
        follow(plane, job.id, start), media_type="text/event-stream", headers=SSE_HEADERS
    )


def _position(name: str, value: str) -> int:
    """An event id as sent: decimal digits only (``int()`` would take ``+1``, ``1_000``, `` 1``),
    within the 63 bits an id is stored in."""
    if value.isascii() and value.isdigit() and int(value) <= MAX_INT:
        return int(value)
    shown = value if len(value) <= 40 else value[:40] + "…"
    raise ApiError(
        400,
        f"{name} must be an event id (decimal digits, at most {MAX_INT}), not `{shown}`. "
        f"Send the id of the last event received, or leave {name} out to start from the first.",
    )


async def follow(plane: Plane, job_id: str, after: int) -> AsyncIterator[str]:
    """Every event of ``job_id`` after ``after``, then live ones, then ``end``.

    Live events come from the job's feed (see ``_events``), as many as are new at each
    wake-up; the database answers what the feed can't, and after every quiet
    ``follow_poll_interval``.
    """
    loop = asyncio.get_running_loop()
    settings = plane.settings
    last_frame = loop.time()
    with plane.hub.follow(job_id) as feed:
        read_db = True
        while True:
            signal = feed.signal  # before reading, so no event slips between
            batch = None if read_db else feed.read(after)
            if batch is None:
                batch = await in_thread(
                    store.frames_after, db=plane.db, job_id=job_id, after=after, limit=_BATCH
                )
            if batch is not None and batch.text:
                yield batch.text
                after, last_frame, read_db = batch.last_id, loop.time(), False
                if batch.terminal:
                    yield END_FRAME
                    return
                if feed.followers > 1:  # let events gather: one write carries many
                    await asyncio.sleep(min(_GATHER_MAX, _GATHER_PER_FOLLOWER * feed.followers))
                continue
            if batch is None:  # the database has nothing newer: has the job ended?
                job = await in_thread(store.get_job, db=plane.db, job_id=job_id)
                if job is None or job.terminal:  # its last events may have landed since
                    tail = await in_thread(
                        store.frames_after, db=plane.db, job_id=job_id, after=after, limit=-1
                    )
                    yield (tail.text if tail is not None else "") + END_FRAME
                    return
            ping_due = last_frame + settings.ping_interval - loop.time()
            try:
                async with asyncio.timeout(max(0.0, min(ping_due, settings.follow_poll_interval))):
                    await signal.wait()
                read_db = False
            except TimeoutError:
                read_db = True
            if loop.time() - last_frame >= settings.ping_interval:
                yield PING_FRAME
                last_frame = loop.time()
