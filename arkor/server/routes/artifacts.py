"""A job's files: list them, download one by its path (never outside the job's folder).

Only regular files inside the job's folder count: a symbolic link is neither listed nor
served, wherever it points. Downloads are attachments of a fixed, inert type, so a
browser never renders one as a page. Each carries its sha256 (``X-Content-Sha256``), so a
client can refuse a transfer that arrived altered; a file is hashed once, then the digest
is remembered while the file keeps its size, times and inode.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from fastapi import APIRouter
from fastapi.responses import FileResponse

from arkor._fs import sha256_file
from arkor.cloud import Artifact, ArtifactList
from arkor.server._errors import SCOPED_ERRORS, ApiError, not_found
from arkor.server.deps import JobDep, PlaneDep

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses=SCOPED_ERRORS)

_PRIVATE = frozenset({"cache"})
"""Folders of a job's output that are the engine's scratch space, not artifacts."""
_TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".txt", ".md", ".log", ".csv", ".yaml", ".toml"})
"""Files served as ``text/plain``; every other one is ``application/octet-stream``."""
_DIGESTS: OrderedDict[tuple[str, int, int, int, int], str] = OrderedDict()
"""sha256 of files served, by path, size, modification and change times and inode."""
_DIGESTS_KEPT = 4096
_DIGESTS_LOCK = threading.Lock()


def _visible(relative: PurePosixPath) -> bool:
    return bool(relative.parts) and relative.parts[0] not in _PRIVATE


def _files(root: Path) -> list[Path]:
    """The regular files under ``root``, sorted; links to files or folders are skipped."""
    found: list[Path] = []
    for folder, _, names in os.walk(root):  # os.walk doesn't descend into linked folders
        base = Path(folder)
        found += (base / name for name in names if not (base / name).is_symlink())
    return sorted(path for path in found if path.is_file())


FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "headers": {
            "X-Content-Sha256": {
                "description": "The hex sha256 of the file's bytes, to check the transfer.",
                "schema": {"type": "string"},
            }
        }
    }
}
"""The OpenAPI description of a file download's answer: its digest header."""


@router.get("/{job_id}/artifacts", response_model=ArtifactList, response_model_exclude_none=True)
def list_artifacts(plane: PlaneDep, job: JobDep) -> ArtifactList:
    root = plane.settings.artifacts_dir / job.id
    artifacts = [
        Artifact(path=relative.as_posix(), size=path.stat().st_size)
        for path in (_files(root) if root.is_dir() and not root.is_symlink() else [])
        if _visible(relative := PurePosixPath(path.relative_to(root).as_posix()))
    ]
    return ArtifactList(artifacts=artifacts)


@router.get(
    "/{job_id}/artifacts/{path:path}",
    response_class=FileResponse,
    responses=FILE_RESPONSES,
)
def download_artifact(plane: PlaneDep, job: JobDep, path: str) -> FileResponse:
    if "\x00" in path:
        raise ApiError(400, "The artifact path holds a NUL character; give a path inside the job.")
    relative = PurePosixPath(path.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    root = plane.settings.artifacts_dir / job.id
    target = Path(root, *relative.parts)
    if not target.resolve().is_relative_to(root.resolve()) or _linked(root, target):
        raise ApiError(400, f"`{path}` leaves the job's artifacts; give a path inside them.")
    if not _visible(relative) or not target.is_file():
        raise not_found(f"Artifact `{path}` of job `{job.id}`")
    text = target.suffix.lower() in _TEXT_SUFFIXES
    return FileResponse(
        target,
        filename=target.name,
        media_type="text/plain; charset=utf-8" if text else "application/octet-stream",
        content_disposition_type="attachment",
        headers={"X-Content-Sha256": _sha256(target)},
    )


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once while it stays the same file with the same bytes."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
    with _DIGESTS_LOCK:
        digest = _DIGESTS.get(key)
        if digest is not None:
            _DIGESTS.move_to_end(key)
            return digest
    digest, _ = sha256_file(path)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
        while len(_DIGESTS) > _DIGESTS_KEPT:
            _DIGESTS.popitem(last=False)
    return digest


def _linked(root: Path, target: Path) -> bool:
    """Whether ``target`` or a folder between it and ``root`` is a symbolic link."""
    return any(part.is_symlink() for part in (target, *target.parents) if part.is_relative_to(root))
