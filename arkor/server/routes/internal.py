"""The worker protocol: what a job's worker calls, with that job's token only.

``GET  /v1/internal/jobs/{id}``            the job and whether it is already cancelled
``GET  /v1/internal/jobs/{id}/dataset``    the uploaded file of a ``file`` dataset
``POST /v1/internal/jobs/{id}/events``     one event (``X-Event-Seq`` numbers retries)
``POST /v1/internal/jobs/{id}/heartbeat``  "still alive"; the answer says whether to stop

Every answer carries ``cancelRequested``, so a worker learns of a cancel within a step
(events) or a heartbeat (about a second), whichever comes first.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import FileResponse

from arkor.cloud import FileDatasetSource, JobConfig, JobEvent
from arkor.cloud._api_models import WorkerAck, WorkerJob
from arkor.server import _store as store
from arkor.server._errors import ApiError, not_found
from arkor.server.deps import JobTokenDep, PlaneDep

router = APIRouter(prefix="/v1/internal/jobs", tags=["internal"])


@router.get("/{job_id}", response_model=WorkerJob, response_model_exclude_none=True)
def worker_job(plane: PlaneDep, job: JobTokenDep) -> WorkerJob:
    cancel = store.touch_lease(db=plane.db, job_id=job.id)
    return WorkerJob(job=job.to_wire(), cancel_requested=cancel, resume=job.resumes > 0)


@router.get("/{job_id}/dataset", response_class=FileResponse)
def worker_dataset(plane: PlaneDep, job: JobTokenDep) -> FileResponse:
    source = JobConfig.model_validate_json(job.config).dataset_source
    if not isinstance(source, FileDatasetSource) or source.upload_id is None:
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
def worker_event(
    plane: PlaneDep,
    job: JobTokenDep,
    event: Annotated[JobEvent, Body()],
    worker_seq: Annotated[int | None, Header(alias="X-Event-Seq", ge=1)] = None,
) -> WorkerAck:
    """Store the event (it is streamed only once stored) and wake the job's followers."""
    ack = store.append_event(
        db=plane.db, job_id=job.id, data=event.to_wire(), worker_seq=worker_seq
    )
    if ack is None:
        raise ApiError(409, f"Job `{job.id}` has already ended; its events are closed.")
    plane.hub.notify(job.id)
    return WorkerAck(event_id=ack.id, cancel_requested=ack.cancel_requested)


@router.post("/{job_id}/heartbeat", response_model=WorkerAck, response_model_exclude_none=True)
def worker_heartbeat(plane: PlaneDep, job: JobTokenDep) -> WorkerAck:
    return WorkerAck(cancel_requested=store.touch_lease(db=plane.db, job_id=job.id))
