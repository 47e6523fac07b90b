"""A job's files: list them, download one by its path (never outside the job's folder)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import APIRouter
from fastapi.responses import FileResponse

from arkor.cloud import Artifact, ArtifactList
from arkor.server._errors import ApiError, not_found
from arkor.server.deps import JobDep, PlaneDep

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])

_PRIVATE = frozenset({"cache"})
"""Folders of a job's output that are the engine's scratch space, not artifacts."""


def _visible(relative: PurePosixPath) -> bool:
    return bool(relative.parts) and relative.parts[0] not in _PRIVATE


@router.get("/{job_id}/artifacts", response_model=ArtifactList, response_model_exclude_none=True)
def list_artifacts(plane: PlaneDep, job: JobDep) -> ArtifactList:
    root = plane.settings.artifacts_dir / job.id
    files = sorted(path for path in root.rglob("*") if path.is_file()) if root.is_dir() else []
    artifacts = [
        Artifact(path=relative.as_posix(), size=path.stat().st_size)
        for path in files
        if _visible(relative := PurePosixPath(path.relative_to(root).as_posix()))
    ]
    return ArtifactList(artifacts=artifacts)


@router.get("/{job_id}/artifacts/{path:path}", response_class=FileResponse)
def download_artifact(plane: PlaneDep, job: JobDep, path: str) -> FileResponse:
    relative = PurePosixPath(path.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    root = (plane.settings.artifacts_dir / job.id).resolve()
    target = Path(root, *relative.parts).resolve()
    if not target.is_relative_to(root):
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    if not _visible(relative) or not target.is_file():
        raise not_found(f"Artifact `{path}` of job `{job.id}`")
    return FileResponse(target, filename=target.name)
