"""The worker protocol: what a job's worker calls, with that job's token only.

``GET  /v1/internal/jobs/{id}``            the job and whether it is already cancelled
``GET  /v1/internal/jobs/{id}/dataset``    the uploaded file of a ``file`` dataset
                                           (``?role=eval``: the uploaded eval file)
``POST /v1/internal/jobs/{id}/events``     one event (``X-Event-Seq`` numbers retries)
``POST /v1/internal/jobs/{id}/heartbeat``  "still alive"; the answer says whether to stop

Every answer carries ``cancelRequested``, so a worker learns of a cancel within a step
(events) or a heartbeat (about a second), whichever comes first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import FileResponse

from arkor.cloud import TERMINAL_EVENT_TYPES, FileDatasetSource, JobConfig, JobEvent
from arkor.cloud._api_models import WorkerAck, WorkerJob
from arkor.server import _store as store
from arkor.server._db import Database, in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses, not_found
from arkor.server.deps import JobTokenDep, PlaneDep, _bearer, _job_token, _plane

router = APIRouter(
    prefix="/v1/internal/jobs",
    tags=["internal"],
    responses={**SCOPED_ERRORS, **error_responses(409)},
)


@router.get("/{job_id}", response_model=WorkerJob, response_model_exclude_none=True)
def worker_job(plane: PlaneDep, job: JobTokenDep) -> WorkerJob:
    """The job; ``resume`` when an earlier worker ran it (its plane stopped or died)."""
    if job.status == "queued":  # a job a cluster held until now: its worker has started
        store.start_placed(db=plane.db, job_id=job.id)
    cancel = store.touch_lease(db=plane.db, job_id=job.id)
    resume = job.resumes > 0 or store.ran_before(db=plane.db, job_id=job.id)
    return WorkerJob(job=job.to_worker(), cancel_requested=cancel, resume=resume)


@router.get("/{job_id}/dataset", response_class=FileResponse)
def worker_dataset(
    plane: PlaneDep,
    job: JobTokenDep,
    role: Annotated[
        Literal["train", "eval"],
        Query(description="`eval`: the uploaded file of `trainer.eval.path` instead."),
    ] = "train",
) -> FileResponse:
    config = JobConfig.model_validate_json(job.config)
    if role == "eval":
        source = config.eval.source if config.eval is not None else None
        if source is None or source.upload_id is None:
            raise ApiError(409, f"Job `{job.id}` has no uploaded eval file.")
    else:
        dataset = config.dataset_source
        source = dataset if isinstance(dataset, FileDatasetSource) else None
        if source is None or source.upload_id is None:
            raise ApiError(409, f"Job `{job.id}` has no uploaded dataset.")
    upload = store.find_upload(db=plane.db, project_id=job.project_id, upload_id=source.upload_id)
    path = plane.settings.uploads_dir / upload.sha256 if upload else None
    if upload is None or path is None or not path.is_file():
        raise not_found(f"Upload `{source.upload_id}`")
    headers = {"X-Content-Sha256": upload.sha256}
    if upload.name:
        headers["X-Filename"] = upload.name
    return FileResponse(path, headers=headers)


@router.post("/{job_id}/events", response_model=WorkerAck, response_model_exclude_none=True)
async def worker_event(
    request: Request,
    job_id: str,
    event: Annotated[JobEvent, Body()],
    authorization: Annotated[str | None, Header()] = None,
    worker_seq: Annotated[int | None, Header(alias="X-Event-Seq", ge=1)] = None,
) -> WorkerAck:
    """Store the event (it is streamed only once stored) and hand it to the job's followers.

    The token check and the write take one trip to a thread, nothing else leaves the
    event loop: with a crowd of followers the loop is busy, and each extra trip through
    it would slow the worker. Handing the event over is one call onto the loop; followers
    send it on their own time, so they never hold up the next event.
    """
    plane = _plane(request)
    ack = await in_thread(
        _store_event,
        db=plane.db,
        job_id=job_id,
        token=_bearer(authorization),
        data=event.to_wire(),
        worker_seq=worker_seq,
    )
    if ack.frame is not None:
        plane.hub.publish(job_id, ack.id, ack.frame, event.type in TERMINAL_EVENT_TYPES)
    return WorkerAck(event_id=ack.id, cancel_requested=ack.cancel_requested)


def _store_event(
    *, db: Database, job_id: str, token: str, data: dict[str, Any], worker_seq: int | None
) -> store.EventAck:
    job = _job_token(db, token, job_id)
    ack = store.append_event(db=db, job_id=job.id, data=data, worker_seq=worker_seq)
    if ack is None:
        raise ApiError(409, f"Job `{job.id}` has already ended; its events are closed.")
    return ack


@router.post("/{job_id}/heartbeat", response_model=WorkerAck, response_model_exclude_none=True)
async def worker_heartbeat(
    request: Request, job_id: str, authorization: Annotated[str | None, Header()] = None
) -> WorkerAck:
    """Record that the worker is alive; one trip to a thread, like an event."""
    cancel = await in_thread(
        _beat, db=_plane(request).db, job_id=job_id, token=_bearer(authorization)
    )
    return WorkerAck(cancel_requested=cancel)


def _beat(*, db: Database, job_id: str, token: str) -> bool:
    return store.touch_lease(db=db, job_id=_job_token(db, token, job_id).id)
