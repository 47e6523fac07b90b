"""A job's worker sends its files to the plane, and fetches them back to resume elsewhere.

A worker on another machine shares no disk with the plane, so it uploads each artifact
over HTTP with its job token; downloads, inference and evaluation then read
``artifacts/<job id>/<path>`` as they do for a local worker.

``PUT  /v1/internal/jobs/{id}/artifacts/{path}``  bytes from ``Upload-Offset`` (default 0)
    of a file of ``Upload-Length`` bytes whose sha256 is ``X-Content-Sha256``. They are
    appended to a partial file kept outside the served tree; a connection that breaks
    keeps what arrived, and the worker goes on from there. An offset other than the one
    held is 409 with the held one in ``Upload-Offset``. The last byte checks the digest
    (a mismatch is 422 and the partial is dropped) and moves the file into place in one
    rename. Answer: ``{"received": N, "complete": bool}``.
``HEAD /v1/internal/jobs/{id}/artifacts/{path}``  ``Upload-Offset``: the bytes held for the
    digest in ``X-Content-Sha256`` (0 when none, the whole length when the file in place
    has that digest), and the placed file's ``X-Content-Sha256`` when there is one.
``GET  /v1/internal/jobs/{id}/artifacts``         the job's files (path, size)
``GET  /v1/internal/jobs/{id}/artifacts/{path}``  one file, with its ``X-Content-Sha256``

Paths follow the public artifact routes: relative, no ``..``, no NUL, never under
``cache/`` (the engine's scratch space), never through a symbolic link. The token is
valid after the run ended, so a worker can finish publishing before its last event.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.requests import ClientDisconnect

from arkor._fs import open_private, sha256_file
from arkor._home import private_dir
from arkor.cloud import ArtifactList, WireModel
from arkor.server._db import Database, in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses, not_found
from arkor.server._settings import Settings
from arkor.server.deps import JobTokenDep, PlaneDep, _bearer, _job_token, _plane
from arkor.server.routes.artifacts import FILE_RESPONSES, _linked, _sha256, _visible, list_artifacts

router = APIRouter(
    prefix="/v1/internal/jobs",
    tags=["internal"],
    responses={**SCOPED_ERRORS, **error_responses(409, 413)},
)

_WRITE_CHUNK = 1 << 20
"""Bytes gathered from the request before one write in a worker thread."""
_BUSY: set[Path] = set()
"""Partial files a request is writing now (only touched on the event loop)."""
_OFFSET_HEADER = {
    "Upload-Offset": {
        "description": "The bytes of this file the plane holds.",
        "schema": {"type": "integer"},
    }
}


class UploadProgress(WireModel):
    """What the plane holds of one file after a ``PUT``."""

    received: int = Field(ge=0)
    complete: bool


@dataclass(frozen=True)
class _Target:
    """Where one artifact of one job is placed, and where its upload waits meanwhile."""

    final: Path
    partial_dir: Path

    def partial(self, digest: str) -> Path:
        return self.partial_dir / digest

    def placed(self, digest: str) -> bool:
        """Whether the file in place has ``digest``."""
        return self.final.is_file() and _sha256(self.final) == digest

    def held(self, digest: str) -> int:
        """The bytes held for ``digest``: all of them when the placed file has it."""
        if self.placed(digest):
            return self.final.stat().st_size
        try:
            return self.partial(digest).stat().st_size
        except FileNotFoundError:
            return 0


def _target(settings: Settings, job_id: str, path: str) -> _Target:
    """The artifact at ``path`` of the job; 400 for a path that leaves its folder."""
    if "\x00" in path:
        raise ApiError(400, "The artifact path holds a NUL character; give a path inside the job.")
    relative = PurePosixPath(path.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    if not _visible(relative):
        raise ApiError(
            400,
            f"`{path}` is under `{relative.parts[0]}/`, the engine's scratch space; "
            "it is never an artifact.",
        )
    root = settings.artifacts_dir / job_id
    final = Path(root, *relative.parts)
    if not final.resolve().is_relative_to(root.resolve()) or _linked(root, final):
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    key = hashlib.sha256(relative.as_posix().encode()).hexdigest()[:32]
    return _Target(final, settings.partial_uploads_dir / job_id / key)


def _digest(value: str | None) -> str:
    digest = (value or "").strip().lower()
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        raise ApiError(422, "X-Content-Sha256 must be the file's sha256 as 64 hex digits.")
    return digest


def _open(*, db: Database, settings: Settings, token: str, job_id: str, path: str) -> _Target:
    """The token's job and the artifact's place: one trip to a thread."""
    job = _job_token(db, token, job_id)
    return _target(settings, job.id, path)


@router.head(
    "/{job_id}/artifacts/{path:path}",
    responses={200: {"headers": _OFFSET_HEADER}},
)
def upload_offset(
    plane: PlaneDep,
    job: JobTokenDep,
    path: str,
    content_sha256: Annotated[str, Header(alias="X-Content-Sha256")],
) -> Response:
    """How much of the file with this digest the plane holds, so an upload goes on from there."""
    digest = _digest(content_sha256)
    target = _target(plane.settings, job.id, path)
    headers = {"Upload-Offset": str(target.held(digest))}
    if target.final.is_file():
        headers["X-Content-Sha256"] = _sha256(target.final)
    return Response(status_code=200, headers=headers)


@router.put(
    "/{job_id}/artifacts/{path:path}",
    response_model=UploadProgress,
    responses={
        409: {
            "headers": _OFFSET_HEADER,
            "description": "Upload-Offset is not what the plane holds.",
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def upload_artifact(
    request: Request,
    job_id: str,
    path: str,
    upload_length: Annotated[int, Header(alias="Upload-Length", ge=0)],
    content_sha256: Annotated[str, Header(alias="X-Content-Sha256")],
    upload_offset: Annotated[int, Header(alias="Upload-Offset", ge=0)] = 0,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Append the body to the file's upload at ``Upload-Offset``; place it once complete."""
    plane = _plane(request)
    limit = plane.settings.max_upload_bytes
    if upload_length > limit:
        raise ApiError(
            413,
            f"`{path}` is {upload_length} bytes, over this plane's limit of {limit}: "
            "raise it on the plane with ARKOR_MAX_UPLOAD_BYTES.",
        )
    digest = _digest(content_sha256)
    target = await in_thread(
        _open,
        db=plane.db,
        settings=plane.settings,
        token=_bearer(authorization),
        job_id=job_id,
        path=path,
    )
    partial = target.partial(digest)
    if await anyio.to_thread.run_sync(target.placed, digest):
        return _progress(upload_length, complete=True)
    held = await anyio.to_thread.run_sync(target.held, digest)
    if partial in _BUSY or upload_offset != held:
        why = (
            "another upload of this file is under way"
            if partial in _BUSY
            else f"the plane holds {held} bytes of it, not {upload_offset}"
        )
        return _conflict(f"`{path}` cannot go on from byte {upload_offset}: {why}.", held)
    _BUSY.add(partial)
    try:
        received = await _append(request, partial, start=held, length=upload_length)
        if received < upload_length:
            return _progress(received, complete=False)
        await in_thread(_place, target=target, digest=digest, path=path)
        return _progress(upload_length, complete=True)
    finally:
        _BUSY.discard(partial)


def _conflict(message: str, held: int) -> Response:
    """409 naming the offset the plane holds, in the body and in ``Upload-Offset``."""
    return JSONResponse(
        {"error": message, "uploadOffset": held},
        status_code=409,
        headers={"Upload-Offset": str(held)},
    )


def _progress(received: int, *, complete: bool) -> Response:
    body = UploadProgress(received=received, complete=complete)
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True), headers={"Upload-Offset": str(received)}
    )


async def _append(request: Request, partial: Path, *, start: int, length: int) -> int:
    """Write the body after the ``start`` bytes held; return the bytes held at the end.

    Writes go to a worker thread a megabyte at a time. A body longer than the file is
    400 and adds nothing; a broken connection keeps what arrived.
    """
    handle = await in_thread(_open_partial, partial=partial)
    held, pending = start, bytearray()
    try:
        try:
            async for chunk in request.stream():
                if held + len(pending) + len(chunk) > length:
                    await anyio.to_thread.run_sync(handle.truncate, start)
                    raise ApiError(
                        400,
                        f"The body runs past Upload-Length ({length} bytes) from byte {start}: "
                        "send at most the bytes left.",
                    )
                pending += chunk
                if len(pending) >= _WRITE_CHUNK:
                    held += await anyio.to_thread.run_sync(handle.write, bytes(pending))
                    pending.clear()
        except ClientDisconnect:
            pass  # the worker comes back and asks how much arrived
        if pending:
            held += await anyio.to_thread.run_sync(handle.write, bytes(pending))
    finally:
        await anyio.to_thread.run_sync(handle.close)
    return held


def _open_partial(*, partial: Path) -> BinaryIO:
    private_dir(partial.parent)
    return open_private(partial, "ab")


def _place(*, target: _Target, digest: str, path: str) -> None:
    """Check the complete upload's digest and move it into the served tree in one rename."""
    partial = target.partial(digest)
    actual, _ = sha256_file(partial)
    if actual != digest:
        partial.unlink(missing_ok=True)
        raise ApiError(
            422,
            f"`{path}` arrived with sha256 {actual}, not the X-Content-Sha256 {digest}: "
            "the bytes were damaged or the header names another file; upload it again.",
        )
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    private_dir(target.final.parent)
    os.replace(partial, target.final)
    shutil.rmtree(target.partial_dir, ignore_errors=True)


@router.get("/{job_id}/artifacts", response_model=ArtifactList, response_model_exclude_none=True)
def worker_artifacts(plane: PlaneDep, job: JobTokenDep) -> ArtifactList:
    """The job's placed files, so a worker resuming elsewhere knows what to fetch."""
    return list_artifacts(plane, job)


@router.get(
    "/{job_id}/artifacts/{path:path}",
    response_class=FileResponse,
    responses=FILE_RESPONSES,
)
def worker_artifact(plane: PlaneDep, job: JobTokenDep, path: str) -> FileResponse:
    """One placed file, with its digest."""
    target = _target(plane.settings, job.id, path)
    if not target.final.is_file():
        raise not_found(f"Artifact `{path}` of job `{job.id}`")
    return FileResponse(
        target.final,
        media_type="application/octet-stream",
        headers={"X-Content-Sha256": _sha256(target.final)},
    )
