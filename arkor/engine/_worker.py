"""The job worker: runs one job for a control plane, wherever it is started.

The plane starts ``python -m arkor.engine.worker --plane-url URL --job-id ID --artifacts
LOCATION`` with the job's token in ``ARKOR_JOB_TOKEN`` (never on the command line, never
logged). Everything else goes over HTTP, so the same entry point runs as a local
subprocess or as a task on another machine:

1. ``GET  /v1/internal/jobs/{id}``: the job config (and whether it is cancelled already);
2. ``GET  /v1/internal/jobs/{id}/dataset``: the uploaded file of a ``file`` dataset
   (``?role=eval``: the evaluation's own file, ``trainer.eval.path``);
3. :func:`arkor.engine.train`, whose events go to ``POST /v1/internal/jobs/{id}/events``
   (numbered with ``X-Event-Seq`` so a retried POST is stored once), while a thread
   beats ``POST /v1/internal/jobs/{id}/heartbeat`` every second.

Both answers carry ``cancelRequested``, which sets the engine's stop event. A plane that
stays unreachable for ``--plane-lost-after`` seconds stops the run: nobody would see it;
so does the death of the process that started the worker. SIGTERM (a plane stopping
cleanly) suspends the run: the engine stops at the end of the step it is in, so no
checkpoint is left half written, nothing more is reported, and the worker exits with
:data:`SUSPENDED_EXIT` for the plane to put the job back in the queue. A job the plane
asks to resume (``resume`` in step 1) continues from the newest checkpoint in its artifacts.
Files go through an :class:`ArtifactStore`; the local one is a folder the plane reads,
``--artifacts plane`` uploads them over HTTP (:mod:`arkor.engine._artifacts`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from arkor._version import __version__
from arkor.cloud import (
    FileDatasetSource,
    JobEvent,
    TrainingCancelled,
    TrainingFailed,
    TrainingJob,
)
from arkor.cloud._api_models import WorkerAck, WorkerJob
from arkor.errors import ArkorError

if TYPE_CHECKING:
    from arkor.engine._run import TrainingOutcome

TOKEN_ENV = "ARKOR_JOB_TOKEN"
HEARTBEAT_SECONDS = 1.0
SUSPENDED_EXIT = 75
"""The exit code of a worker stopped by SIGTERM without ending its job (EX_TEMPFAIL)."""
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})

logger = logging.getLogger("arkor.worker")


class ArtifactStore(Protocol):
    """Where a job's files end up.

    The engine writes under ``workdir``; ``publish`` makes the named files (relative to
    it) available where the plane serves artifacts from, before the event that names
    them is sent. A remote store uploads them; the local store has nothing to do.
    """

    @property
    def workdir(self) -> Path: ...

    def prepare(self, resume: bool) -> None:
        """Ready ``workdir`` before training: on ``resume``, with the newest checkpoint."""

    def publish(self, paths: Sequence[str]) -> None: ...

    def close(self) -> None:
        """Release what the store holds (a scratch folder) once the worker is done."""


class LocalFolderStore:
    """Artifacts written straight into the folder the plane serves (``artifacts/<job id>``)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder

    @property
    def workdir(self) -> Path:
        return self._folder

    def prepare(self, resume: bool) -> None:
        """Nothing to fetch: the checkpoints are in the folder already."""

    def publish(self, paths: Sequence[str]) -> None:
        """Nothing to copy: the engine wrote the files where the plane reads them."""

    def close(self) -> None:
        """The folder is the plane's; it stays."""


PLANE_STORE = "plane"
"""The ``--artifacts`` value that uploads a job's files to its plane over HTTP."""


def open_artifact_store(location: str, plane: PlaneClient | None = None) -> ArtifactStore:
    """The store named by ``location``: a folder path, a ``file://`` URL, or ``plane``.

    ``plane`` (the value) uploads to the plane ``plane`` (the client) talks to: a worker
    on a machine that shares no disk with it.
    """
    if location == PLANE_STORE and plane is not None:
        from arkor.engine._artifacts import PlaneStore

        return PlaneStore(plane)
    parts = urlsplit(location)
    if parts.scheme in ("", "file") and location != PLANE_STORE:
        return LocalFolderStore(Path(unquote(parts.path) if parts.scheme else location))
    raise ArkorError(
        f"Artifact store `{location}` is not supported: use a folder path, a file:// URL, "
        f"or `{PLANE_STORE}` (upload to the control plane)."
    )


class PlaneUnavailable(ArkorError):
    """The plane could not be reached for longer than the worker waits."""


class PlaneRefused(ArkorError):
    """The plane answered no (the job ended, or the token is not valid for it)."""


class PlaneClient:
    """The worker's side of the internal routes, retrying what is safe to retry."""

    def __init__(self, url: str, job_id: str, token: str, *, lost_after: float) -> None:
        self.job_id = job_id
        self.lost_after = lost_after
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "X-Arkor-Client": f"arkor-python/{__version__}",
            },
            timeout=httpx.Timeout(30.0, connect=10.0),
        )
        self._prefix = f"/v1/internal/jobs/{job_id}"
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.lost = False
        """Set once the plane has been unreachable too long; later calls fail at once."""
        self.suspended = False
        """Set on SIGTERM: the job will resume elsewhere, so nothing more is reported."""

    def close(self) -> None:
        self._http.close()

    def send(
        self, method: str, path: str, *, stream: bool = False, **options: Any
    ) -> httpx.Response:
        """One request under the job's internal routes, not retried (the caller retries).

        ``stream=True`` leaves the body unread: the caller reads and closes the answer.
        """
        if self.lost:
            raise PlaneUnavailable("The control plane has been unreachable too long.")
        if self.suspended:
            raise PlaneUnavailable("The worker was asked to stop (SIGTERM).")
        request = self._http.build_request(method, self._prefix + path, **options)
        return self._http.send(request, stream=stream)

    def job(self) -> WorkerJob:
        return WorkerJob.model_validate_json(self._request("GET", "").content)

    def download_dataset(
        self, folder: Path, source: FileDatasetSource, *, role: str | None = None
    ) -> Path:
        """Stream the job's uploaded dataset into ``folder``, named so its format is known.

        ``role="eval"`` fetches the evaluation's own rows (``trainer.eval.path``) instead.
        """
        what = "the eval file" if role == "eval" else "the dataset"
        try:
            with self._http.stream(
                "GET", f"{self._prefix}/dataset", params={"role": role} if role else None
            ) as response:
                if not response.is_success:
                    response.read()
                    raise PlaneRefused(
                        f"The control plane could not give {what} ({response.status_code}): "
                        f"{_error_of(response)}"
                    )
                name = Path(source.path or response.headers.get("x-filename") or "").name
                if name in ("", ".", ".."):  # the plane refuses such names; older uploads have them
                    name = role or "dataset"
                target = folder / name
                digest = hashlib.sha256()
                with target.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        handle.write(chunk)
        except httpx.TransportError as error:
            raise PlaneUnavailable(f"The download of {what} broke off: {error}.") from error
        expected = response.headers.get("x-content-sha256")
        if expected and digest.hexdigest() != expected:
            raise PlaneUnavailable(
                f"{what.capitalize()} arrived damaged (its sha256 does not match)."
            )
        return target

    def post_event(self, event: JobEvent) -> WorkerAck:
        with self._seq_lock:  # one event at a time, so ids follow the engine's order
            self._seq += 1
            response = self._request(
                "POST",
                "/events",
                json=event.to_wire(),
                headers={"X-Event-Seq": str(self._seq)},
            )
        return WorkerAck.model_validate_json(response.content)

    def heartbeat(self) -> WorkerAck:
        return WorkerAck.model_validate_json(
            self._request("POST", "/heartbeat", retry=False).content
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        json: object = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if self.lost:
            raise PlaneUnavailable("The control plane has been unreachable too long.")
        if self.suspended:
            raise PlaneUnavailable("The worker was asked to stop (SIGTERM).")
        deadline = time.monotonic() + self.lost_after
        delay = 0.25
        while True:
            try:
                response = self._http.request(
                    method, self._prefix + path, json=json, headers=headers
                )
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.is_success:
                    return response
                if response.status_code not in _RETRYABLE:
                    raise PlaneRefused(
                        f"The control plane refused {method} {path or '/'} "
                        f"({response.status_code}): {_error_of(response)}"
                    )
                problem = f"HTTP {response.status_code}"
            if not retry or self.lost or self.suspended or time.monotonic() + delay > deadline:
                raise PlaneUnavailable(
                    f"The control plane did not take {method} {path or '/'} ({problem})."
                )
            time.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, 5.0)


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


class PlaneSink:
    """The engine's event sink: publish the event's files, then post it; honour a cancel."""

    def __init__(self, plane: PlaneClient, store: ArtifactStore, stop: threading.Event) -> None:
        self.plane = plane
        self.store = store
        self.stop = stop

    def emit(self, event: JobEvent) -> None:
        if self.plane.suspended:  # the run resumes from its newest checkpoint elsewhere
            return
        artifacts = getattr(event, "artifacts", None)
        if artifacts:
            self.store.publish([artifact.path for artifact in artifacts])
        if self.plane.post_event(event).cancel_requested:
            self.stop.set()


class Heartbeat(threading.Thread):
    """Tells the plane the worker lives; sets ``stop`` on a cancel or when the plane is lost.

    The plane is lost when it stays unreachable too long, or at once when the process that
    started this worker dies (a local plane killed outright): the plane that comes back
    resumes the job from its checkpoint, and two runs must never write one folder.
    """

    def __init__(self, plane: PlaneClient, stop: threading.Event) -> None:
        super().__init__(name="arkor-heartbeat", daemon=True)
        self.plane = plane
        self.stop = stop
        self._done = threading.Event()
        self._parent = os.getppid()

    def run(self) -> None:
        last_answer = time.monotonic()
        while not self._done.wait(HEARTBEAT_SECONDS):
            if os.getppid() != self._parent:
                self._lose("The process that started this worker has exited; stopping.")
                return
            try:
                ack = self.plane.heartbeat()
            except PlaneRefused as error:
                logger.warning("%s Stopping.", error)
                self.stop.set()
                return
            except PlaneUnavailable as error:
                if time.monotonic() - last_answer > self.plane.lost_after:
                    self._lose(f"{error} It has been unreachable too long; stopping.")
                    return
                continue
            last_answer = time.monotonic()
            if ack.cancel_requested and not self.stop.is_set():
                logger.info("Cancel requested; stopping at the end of this step.")
                self.stop.set()

    def _lose(self, why: str) -> None:
        logger.error("%s", why)
        self.plane.lost = True
        self.stop.set()

    def finish(self) -> None:
        self._done.set()
        self.join()


def run_job(
    plane: PlaneClient, store: ArtifactStore, stop: threading.Event | None = None
) -> TrainingOutcome | None:
    """Run the plane's job to its end; None when it ended before training began.

    Setting ``stop`` ends the run at the end of a step.
    """
    assignment = plane.job()
    job: TrainingJob = assignment.job
    if assignment.cancel_requested:
        plane.post_event(TrainingCancelled(job_id=job.id))
        return None
    stop = stop if stop is not None else threading.Event()
    heartbeat = Heartbeat(plane, stop)
    heartbeat.start()
    try:
        with tempfile.TemporaryDirectory(prefix="arkor-dataset-") as scratch:
            source = job.config.dataset_source
            dataset_file = None
            if isinstance(source, FileDatasetSource):
                dataset_file = plane.download_dataset(Path(scratch), source)
            spec = job.config.eval
            eval_file = None
            if spec is not None and spec.source is not None:
                # a folder of its own: the eval file may have the dataset's name
                (Path(scratch) / "eval").mkdir()
                eval_file = plane.download_dataset(Path(scratch) / "eval", spec.source, role="eval")
            store.prepare(assignment.resume)
            from arkor.engine._run import TrainingRun, train

            return train(
                TrainingRun(
                    job_id=job.id,
                    config=job.config,
                    output_dir=store.workdir,
                    sink=PlaneSink(plane, store, stop),
                    stop=stop,
                    dataset_file=dataset_file,
                    eval_file=eval_file,
                    resume=assignment.resume,
                )
            )
    except PlaneUnavailable:
        raise
    except ArkorError as error:  # a missing extra, a dataset the plane can't give: reported
        plane.post_event(TrainingFailed(job_id=job.id, error=str(error)))
        return None
    finally:
        heartbeat.finish()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m arkor.engine.worker",
        description=f"Run one Arkor training job for a control plane (token in ${TOKEN_ENV}).",
    )
    parser.add_argument("--plane-url", required=True, help="The control plane's base URL.")
    parser.add_argument("--job-id", required=True)
    parser.add_argument(
        "--artifacts",
        required=True,
        help="Where the job's files go: a folder or file:// URL the plane reads, or `plane` "
        "to upload them to the plane over HTTP (a machine that shares no disk with it).",
    )
    parser.add_argument(
        "--plane-lost-after",
        type=float,
        default=60.0,
        help="Seconds without reaching the plane after which the run stops (default 60).",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; exit 0 when it completed, 1 otherwise, 2 on a usage error.

    Exit :data:`SUSPENDED_EXIT` when SIGTERM stopped it before it ended.
    """
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per event would drown the log
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        logger.error("No job token: the plane passes it in $%s.", TOKEN_ENV)
        return 2
    plane = PlaneClient(args.plane_url, args.job_id, token, lost_after=args.plane_lost_after)
    stop = threading.Event()

    def suspend(signum: int, frame: object) -> None:
        plane.suspended = True
        stop.set()

    signal.signal(signal.SIGTERM, suspend)
    logger.info("Worker for job %s (plane %s), arkor %s.", args.job_id, args.plane_url, __version__)
    try:
        with closing(open_artifact_store(args.artifacts, plane)) as store:
            outcome = run_job(plane, store, stop)
    except ArkorError as error:
        if plane.suspended:
            return _suspended(args.job_id)
        logger.error("%s", error)
        return 1
    finally:
        plane.close()
    if plane.suspended:
        return _suspended(args.job_id)
    if outcome is None:
        return 1
    logger.info("Job %s ended: %s at step %d.", args.job_id, outcome.status, outcome.step)
    return 0 if outcome.status == "completed" else 1


def _suspended(job_id: str) -> int:
    logger.info(
        "Job %s stopped on SIGTERM; it resumes from its newest checkpoint when a plane runs it.",
        job_id,
    )
    return SUSPENDED_EXIT
