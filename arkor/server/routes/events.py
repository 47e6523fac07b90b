"""A job's event stream as Server-Sent Events: replay after ``Last-Event-ID``, then follow.

Events are stored as the SSE frames they are streamed as (see ``_events.frame``) and sent
as stored, in batches, so a replay costs one query per batch and formats nothing.
Followers sleep on the job's signal (see ``_events``), re-reading the database only when
woken or every ``follow_poll_interval`` (events another plane stored), with ``event: ping``
after ``ping_interval`` of silence. After the terminal event comes ``event: end``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from arkor.server import _store as store
from arkor.server._db import in_thread
from arkor.server._errors import ApiError
from arkor.server._events import END_FRAME, PING_FRAME
from arkor.server._plane import Plane
from arkor.server.deps import JobDep, PlaneDep

router = APIRouter(prefix="/v1/jobs", tags=["events"])

_BATCH = 2000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/{job_id}/events/stream", response_class=StreamingResponse)
async def stream_events(
    plane: PlaneDep,
    job: JobDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None,
        Query(ge=0, description="Like Last-Event-ID, for clients that can't set headers."),
    ] = None,
) -> StreamingResponse:
    start = after or 0
    if last_event_id:
        try:
            start = max(int(last_event_id), 0)
        except ValueError:
            raise ApiError(
                400, f"Last-Event-ID must be an event id, not `{last_event_id}`."
            ) from None
    return StreamingResponse(
        follow(plane, job.id, start), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def follow(plane: Plane, job_id: str, after: int) -> AsyncIterator[str]:
    """Every event of ``job_id`` after ``after``, then live ones, then ``end``."""
    loop = asyncio.get_running_loop()
    settings = plane.settings
    last_frame = loop.time()
    while True:
        signal = plane.hub.signal(job_id)  # before reading, so no commit slips between
        batch = await in_thread(
            store.frames_after, db=plane.db, job_id=job_id, after=after, limit=_BATCH
        )
        if batch is not None:
            yield batch.text
            after, last_frame = batch.last_id, loop.time()
            if batch.terminal:
                yield END_FRAME
                return
            continue
        job = await in_thread(store.get_job, db=plane.db, job_id=job_id)
        if job is None or job.terminal:  # its last events may have landed since the read
            tail = await in_thread(
                store.frames_after, db=plane.db, job_id=job_id, after=after, limit=-1
            )
            yield (tail.text if tail is not None else "") + END_FRAME
            return
        ping_due = last_frame + settings.ping_interval - loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                signal.wait(), max(0.0, min(ping_due, settings.follow_poll_interval))
            )
        if loop.time() - last_frame >= settings.ping_interval:
            yield PING_FRAME
            last_frame = loop.time()
