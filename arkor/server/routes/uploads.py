"""Dataset uploads: raw bytes checked against ``X-Content-Sha256``, stored once per content.

Files live under ``uploads/<sha256>`` (shared by every project); the database says which
projects hold which digest. A project that already holds a digest gets its existing
upload back without the bytes being stored again.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from arkor._fs import open_private
from arkor.cloud import Upload, UploadEnvelope
from arkor.server import _store as store
from arkor.server._db import in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError
from arkor.server._store import UploadRow
from arkor.server.deps import PlaneDep, ProjectDep

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=SCOPED_ERRORS)

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _file_name(value: str) -> str:
    """The name to keep from ``X-Filename``: its last path part, when that is a usable name.

    The worker names its copy of the dataset after it, so ``..`` or a control character
    would break the run long after the upload; refuse it here, where the caller can fix it.
    """
    name = re.split(r"[/\\]", value)[-1]
    if name in ("", ".", "..") or any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ApiError(
            400,
            f"X-Filename {value!r} is not a file name the plane can keep: send the file's own "
            "name, such as `train.jsonl` (not `.` or `..`, without control characters).",
        )
    return name


def _wire(upload: UploadRow) -> UploadEnvelope:
    return UploadEnvelope(upload=Upload(id=upload.id, sha256=upload.sha256, size=upload.size))


@router.get("/{sha256}", response_model=UploadEnvelope, response_model_exclude_none=True)
async def find_upload(sha256: str, plane: PlaneDep, project: ProjectDep) -> UploadEnvelope:
    """The project's upload of these bytes, by digest, so a client need not send them again."""
    digest = sha256.strip().lower()
    existing = None
    if _SHA256.fullmatch(digest):
        existing = await in_thread(
            store.find_upload, db=plane.db, project_id=project.id, sha256=digest
        )
    if existing is None:
        raise ApiError(404, f"This project has no upload with sha256 {digest}.")
    return _wire(existing)


@router.post(
    "",
    response_model=UploadEnvelope,
    status_code=201,
    response_model_exclude_none=True,
    responses={200: {"model": UploadEnvelope, "description": "The project had these bytes."}},
)
async def create_upload(
    request: Request,
    response: Response,
    plane: PlaneDep,
    project: ProjectDep,
    content_sha256: Annotated[str, Header(alias="X-Content-Sha256")],
    filename: Annotated[str | None, Header(alias="X-Filename", max_length=255)] = None,
) -> UploadEnvelope:
    """Store the body (201), or return the project's upload of the same bytes (200).

    ``X-Filename`` (optional) keeps the file's name, whose extension tells the worker
    the dataset's format when the job config names no path.
    """
    name = _file_name(filename) if filename else None
    digest = content_sha256.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ApiError(422, "X-Content-Sha256 must be the body's sha256 as 64 hex digits.")
    existing = await in_thread(store.find_upload, db=plane.db, project_id=project.id, sha256=digest)
    if existing is not None:
        response.status_code = 200
        return _wire(existing)
    folder = plane.settings.uploads_dir
    partial = folder / f".incoming-{secrets.token_hex(8)}"
    hasher, size = hashlib.sha256(), 0
    try:
        with open_private(partial, "xb") as handle:
            async for chunk in request.stream():
                hasher.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        if hasher.hexdigest() != digest:
            raise ApiError(
                422,
                f"The body's sha256 is {hasher.hexdigest()}, not the X-Content-Sha256 {digest}: "
                "the upload was damaged or the header names another file.",
            )
        target = folder / digest
        if not target.exists():
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    upload, created = await in_thread(
        store.create_upload, db=plane.db, project_id=project.id, sha256=digest, size=size, name=name
    )
    if not created:
        response.status_code = 200
    return _wire(upload)
