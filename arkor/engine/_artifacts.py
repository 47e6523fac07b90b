"""A job's files uploaded to its plane over HTTP, for a worker that shares no disk with it.

The engine writes into a scratch folder; each file an event names is uploaded before the
event is posted (``PUT /v1/internal/jobs/{id}/artifacts/{path}``), in pieces the plane
keeps: after a broken connection the upload goes on from the bytes the plane holds.
A worker resuming on a fresh machine first fetches the newest checkpoint the plane holds
complete. The routes are described in :mod:`arkor.server.routes.worker_artifacts`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx

from arkor._fs import sha256_file
from arkor.cloud import ArtifactList
from arkor.engine._run import CHECKPOINTS_DIRNAME
from arkor.engine._worker import PlaneClient, PlaneRefused, PlaneUnavailable, _error_of

logger = logging.getLogger("arkor.worker")

LAST_IN_CHECKPOINT = "trainer_state.json"
"""Uploaded after every other file of its checkpoint: on the plane it marks one complete."""
_CHUNK = 1 << 20
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_CHECKPOINT = re.compile(rf"^{CHECKPOINTS_DIRNAME}/checkpoint-(\d+)/")


class PlaneStore:
    """``--artifacts plane``: files written to a scratch folder and uploaded to the plane.

    Every transfer retries while the plane stays unreachable less than the worker's
    ``lost_after``; progress starts the wait again.
    """

    def __init__(self, plane: PlaneClient) -> None:
        self.plane = plane
        self._scratch = Path(tempfile.mkdtemp(prefix="arkor-artifacts-"))

    @property
    def workdir(self) -> Path:
        return self._scratch

    def close(self) -> None:
        """Remove the scratch folder: what mattered is on the plane."""
        shutil.rmtree(self._scratch, ignore_errors=True)

    def prepare(self, resume: bool) -> None:
        """On ``resume``, fetch the newest checkpoint the plane holds complete."""
        if not resume:
            return
        listed = ArtifactList.model_validate_json(self._retried("GET", "/artifacts").content)
        steps: dict[int, list[str]] = {}
        for artifact in listed.artifacts:
            match = _CHECKPOINT.match(artifact.path)
            if match:
                steps.setdefault(int(match[1]), []).append(artifact.path)
        complete = [
            step
            for step, paths in steps.items()
            if f"{CHECKPOINTS_DIRNAME}/checkpoint-{step}/{LAST_IN_CHECKPOINT}" in paths
        ]
        if not complete:
            logger.info("The plane holds no complete checkpoint; training starts over.")
            return
        newest = max(complete)
        for path in steps[newest]:
            self._download(path)
        logger.info("Fetched checkpoint %d (%d files) from the plane.", newest, len(steps[newest]))

    def publish(self, paths: Sequence[str]) -> None:
        """Upload each file (every file of a folder), skipping what the plane holds already.

        A checkpoint's ``trainer_state.json`` goes last, so the plane holds it only once
        the rest of that checkpoint arrived.
        """
        files: list[str] = []
        for path in paths:
            local = self._scratch / path
            if local.is_dir():
                files += (
                    found.relative_to(self._scratch).as_posix()
                    for found in sorted(local.rglob("*"))
                    if found.is_file()
                )
            else:
                files.append(path)
        files.sort(key=lambda name: name.rpartition("/")[2] == LAST_IN_CHECKPOINT)
        for path in files:
            self._upload(path)

    def _upload(self, path: str) -> None:
        local = self._scratch / path
        digest, length = sha256_file(local)
        url = _url(path)
        headers = {"X-Content-Sha256": digest, "Upload-Length": str(length)}
        wait = _Wait(self.plane, f"the upload of `{path}`")
        offset: int | None = None  # None: ask the plane what it holds
        best, damaged = 0, False
        while True:
            try:
                if offset is None:
                    answer = self.plane.send("HEAD", url, headers={"X-Content-Sha256": digest})
                    self._check(answer, f"HEAD {url}")
                    if answer.headers.get("x-content-sha256") == digest:
                        return  # the plane has this very file
                    offset = int(answer.headers["upload-offset"])
                    if offset > best:
                        best = offset
                        wait.progressed()
                answer = self.plane.send(
                    "PUT",
                    url,
                    content=_read(local, offset),
                    headers={**headers, "Upload-Offset": str(offset)},
                )
                if answer.status_code == 409 and "upload-offset" in answer.headers:
                    # an earlier request of ours broke off, and may still be being written
                    offset = int(answer.headers["upload-offset"])
                    wait.retry(f"the plane holds {offset} bytes")
                    continue
                if answer.status_code == 422 and not damaged:
                    damaged, offset = True, None  # damaged on the way: once more from the start
                    continue
                self._check(answer, f"PUT {url}")
                progress = answer.json()
                if progress["complete"]:
                    return
                offset = int(progress["received"])
            except (httpx.TransportError, _Retry) as error:
                offset = None
                wait.retry(f"{type(error).__name__}: {error}")
                continue
            if offset > best:
                best = offset
                wait.progressed()

    def _download(self, path: str) -> None:
        """Fetch one file into the scratch folder, checking its digest; again if it breaks."""
        target = self._scratch / path
        target.parent.mkdir(parents=True, exist_ok=True)
        wait = _Wait(self.plane, f"the download of `{path}`")
        while True:
            try:
                with closing(self.plane.send("GET", _url(path), stream=True)) as answer:
                    self._check(answer, f"GET {_url(path)}")
                    digest = hashlib.sha256()
                    with target.open("wb") as handle:
                        for chunk in answer.iter_bytes(_CHUNK):
                            digest.update(chunk)
                            handle.write(chunk)
                if digest.hexdigest() != answer.headers.get("x-content-sha256"):
                    raise _Retry("its sha256 does not match")
                return
            except (httpx.TransportError, _Retry) as error:
                wait.retry(f"{type(error).__name__}: {error}")

    def _retried(self, method: str, path: str) -> httpx.Response:
        wait = _Wait(self.plane, f"{method} {path}")
        while True:
            try:
                answer = self.plane.send(method, path)
                self._check(answer, f"{method} {path}")
                return answer
            except (httpx.TransportError, _Retry) as error:
                wait.retry(f"{type(error).__name__}: {error}")

    @staticmethod
    def _check(answer: httpx.Response, what: str) -> None:
        """Raise :class:`_Retry` for an answer worth another try, PlaneRefused for a no."""
        if answer.is_success:
            return
        answer.read()
        if answer.status_code in _RETRYABLE:
            raise _Retry(f"HTTP {answer.status_code}")
        raise PlaneRefused(
            f"The control plane refused {what} ({answer.status_code}): {_error_of(answer)}"
        )


class _Retry(Exception):
    """An answer that asks for another try (a busy or failing plane)."""


class _Wait:
    """Backs off between tries; gives up once the plane stays unreachable ``lost_after``."""

    def __init__(self, plane: PlaneClient, what: str) -> None:
        self.plane = plane
        self.what = what
        self.delay = 0.25
        self.deadline = time.monotonic() + plane.lost_after

    def progressed(self) -> None:
        self.delay = 0.25
        self.deadline = time.monotonic() + self.plane.lost_after

    def retry(self, problem: str) -> None:
        if time.monotonic() + self.delay > self.deadline:
            raise PlaneUnavailable(f"The control plane did not take {self.what} ({problem}).")
        logger.info("Retrying %s (%s).", self.what, problem)
        time.sleep(self.delay * random.uniform(0.75, 1.25))
        self.delay = min(self.delay * 2, 5.0)


def _url(path: str) -> str:
    return "/artifacts/" + quote(path, safe="/")


def _read(path: Path, offset: int) -> Iterator[bytes]:
    """The file's bytes from ``offset``, a chunk at a time (the request body)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(_CHUNK):
            yield chunk
