"""Training jobs: create (idempotent with ``Idempotency-Key``), list a page, get, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import TypeAdapter

from arkor.cloud import (
    MAX_INT,
    FileDatasetSource,
    JobCreate,
    JobEnvelope,
    JobEvent,
    JobList,
)
from arkor.server import _store as store
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses
from arkor.server._plane import Plane
from arkor.server.deps import JobDep, PlaneDep, ProjectDep, StoreDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=SCOPED_ERRORS)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

_EVENT = TypeAdapter[JobEvent](JobEvent)


@router.post("", response_model=JobEnvelope, status_code=201, response_model_exclude_none=True)
def create_job(
    plane: PlaneDep,
    project: ProjectDep,
    body: JobCreate,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JobEnvelope:
    """Queue a job; retrying with the same key and body within 24 h returns the same job."""
    source = body.config.dataset_source
    if isinstance(source, FileDatasetSource):
        if source.upload_id is None:
            raise ApiError(
                422,
                "A `file` dataset needs an `uploadId`: upload the file with POST /v1/uploads first.",
            )
        _check_upload(plane, project, source.upload_id)
    held_out = body.config.eval.source if body.config.eval is not None else None
    if held_out is not None:
        if held_out.upload_id is None:
            raise ApiError(
                422,
                "An eval file (`eval.source`) needs an `uploadId`: upload the file with "
                "POST /v1/uploads first.",
            )
        _check_upload(plane, project, held_out.upload_id)
    try:
        job, replayed = store.create_job(
            db=plane.db,
            project=project,
            name=body.name,
            config=body.config.to_wire(),
            plane_id=plane.id,
            idempotency_key=idempotency_key,
            idempotency_ttl=plane.settings.idempotency_ttl,
        )
    except store.IdempotencyConflict:
        raise ApiError(
            422,
            f"Idempotency-Key `{idempotency_key}` was already used for a different job request; "
            "use a fresh key for a new job.",
        ) from None
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        plane.supervisor.wake()
    return JobEnvelope(job=job.to_wire())


def _check_upload(plane: Plane, project: store.ProjectRow, upload_id: str) -> None:
    if store.find_upload(db=plane.db, project_id=project.id, upload_id=upload_id) is None:
        raise ApiError(422, f"Upload `{upload_id}` is not in this project.")


@router.get("", response_model=JobList, response_model_exclude_none=True)
def list_jobs(
    db: StoreDep,
    project: ProjectDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    cursor: Annotated[
        str | None, Query(description="The `nextCursor` of the previous page.")
    ] = None,
) -> JobList:
    """A page of the project's jobs, newest first; ``nextCursor`` (absent on the last page)
    asks for the next."""
    before = _cursor(cursor) if cursor is not None else None
    jobs, next_seq = store.list_jobs(db=db, project_id=project.id, limit=limit, before=before)
    return JobList(
        jobs=[job.to_wire() for job in jobs],
        next_cursor=str(next_seq) if next_seq is not None else None,
    )


def _cursor(cursor: str) -> int:
    if cursor.isascii() and cursor.isdigit() and int(cursor) <= MAX_INT:
        return int(cursor)
    raise ApiError(
        400,
        "`cursor` is not a cursor this plane gave out: pass the `nextCursor` of the previous "
        "page, or leave it out for the newest jobs.",
    )


@router.get("/{job_id}", response_model=JobEnvelope, response_model_exclude_none=True)
def get_job(db: StoreDep, job: JobDep, events: Annotated[bool, Query()] = True) -> JobEnvelope:
    """The job, with its stored events unless ``events=false``."""
    if not events:
        return JobEnvelope(job=job.to_wire())
    stored = store.event_data(db=db, job_id=job.id)
    return JobEnvelope(job=job.to_wire(), events=[_EVENT.validate_json(data) for data in stored])


@router.post(
    "/{job_id}/cancel",
    response_model=JobEnvelope,
    status_code=202,
    response_model_exclude_none=True,
    responses=error_responses(409),
)
def cancel_job(plane: PlaneDep, job: JobDep) -> JobEnvelope:
    """Cancel: a queued job ends now; a running one stops within a step (its worker polls)."""
    outcome = store.request_cancel(db=plane.db, job_id=job.id)
    if outcome == "terminal":
        raise ApiError(409, f"Job `{job.id}` has already ended ({job.status}); nothing to cancel.")
    plane.hub.notify(job.id)
    current = store.get_job(db=plane.db, job_id=job.id)
    assert current is not None
    return JobEnvelope(job=current.to_wire())
