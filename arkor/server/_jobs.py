"""The job queue: one worker process per running job, at most ``max_jobs`` at once
(or, with ``executor = "ray"``, one Ray job per job, queued by Ray: see ``_ray``).

Workers are started through one entry point (``python -m arkor.engine.worker``) with the
plane's URL, the job id and a job-scoped token (in the environment, never on the command
line), and report everything over HTTP. This plane only watches their exit: a worker
that ends without a terminal event has its job failed with the reason. The plane's own
heartbeat (table ``planes``) and the workers' heartbeats (``jobs.lease_at``) form the
owner lease that lets a later plane recover jobs orphaned by one that died: back to the
queue to resume from their last checkpoint, or failed when they have none. A plane that
stops cleanly (SIGTERM, Ctrl-C, the end of an embedded run) puts its running jobs back in
the queue itself, after their workers have stopped at the end of a step. Each beat also
drops the unfinished artifact uploads of jobs that ended, once no worker of theirs writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from arkor._fs import open_private
from arkor._home import PRIVATE_UMASK
from arkor.cloud import utc_now
from arkor.server import _store as store
from arkor.server._db import Database, in_thread
from arkor.server._events import EventHub
from arkor.server._settings import Settings

if TYPE_CHECKING:
    from arkor.server._ray import RayExecutor

logger = logging.getLogger("arkor.server")


def orphan_reason(job: store.JobRow, checkpointed: bool) -> str:
    """Why a job orphaned by a plane that died was failed rather than resumed."""
    if not checkpointed:
        return (
            "The control plane stopped while this job was running, before its first "
            "checkpoint, so there was nothing to resume from; start it again."
        )
    return (
        "The control plane stopped while this job was running. It had already resumed from a "
        f"checkpoint {job.resumes} time(s), the most allowed (ARKOR_MAX_RESUMES), so it was "
        "not resumed again; start it again."
    )


JOB_TOKEN_ENV = "ARKOR_JOB_TOKEN"
"""Where ``arkor.engine.worker`` reads its job token (never from its command line)."""
WORKER_SUSPENDED_EXIT = 75
"""How ``arkor.engine.worker`` exits when SIGTERM stopped it before its job ended."""
_STOP_TIMEOUT = 10.0
_TAIL_LINES = 20
_TAIL_BYTES = 4096


def crash_reason(*, code: int, log: Path, start: int) -> str:
    """Why a job failed whose worker exited without reporting how the run ended.

    The worker's last lines of output (from ``start`` in its log: a resumed job's log
    holds earlier runs too) say why, the final one (a traceback's exception) first.
    """
    try:
        with log.open("rb") as handle:
            offset = max(start, log.stat().st_size - _TAIL_BYTES)
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        offset, text = start, ""
    lines = text.splitlines()[1 if offset > start else 0 :]  # not from the middle of a line
    lines = [line.rstrip() for line in lines if line.strip()][-_TAIL_LINES:]
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    if not lines:
        return (
            f"The worker process {how} before reporting how the run ended, without any "
            f"output; its log is {log}."
        )
    output = "\n".join(f"  {line}" for line in lines)
    return (
        f"The worker process {how} before reporting how the run ended: {lines[-1].strip()}\n"
        f"Its last output:\n{output}\nThe whole log: {log}"
    )


def resume_notice(count: int, home: Path) -> str:
    """What a stopping plane says about the running jobs it put back in the queue."""
    jobs = "1 running job" if count == 1 else f"{count} running jobs"
    return (
        f"{jobs} will resume from {'its' if count == 1 else 'their'} last checkpoint when a "
        f"plane starts on this home ({home})."
    )


def sweep_partial_uploads(*, db: Database, settings: Settings) -> list[str]:
    """Drop the unfinished artifact uploads of jobs that ended, once no worker of theirs writes.

    A worker may still publish files just after its job ended (a cancel it is finishing, a
    lease it lost): it is killed ``cancel_grace`` after a cancel, and orphaned after
    ``lease_ttl``, so the uploads of a job that ended longer ago than both can go.
    """
    root = settings.partial_uploads_dir
    try:
        job_ids = sorted(
            entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)
        )
    except FileNotFoundError:
        return []
    ended_before = utc_now(ago=settings.cancel_grace + settings.lease_ttl)
    swept = store.ended_or_unknown(db=db, job_ids=job_ids, ended_before=ended_before)
    for job_id in swept:
        shutil.rmtree(root / job_id, ignore_errors=True)
    return swept


class Supervisor:
    """Claims queued jobs, runs their workers, records how they end, and keeps the lease."""

    def __init__(self, *, settings: Settings, db: Database, hub: EventHub, plane_id: str) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.plane_id = plane_id
        self.started_at = utc_now()
        self._workers: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._killed: set[str] = set()
        self._released: set[str] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_beat = 0.0
        self._ray: RayExecutor | None = None
        if settings.executor == "ray":
            from arkor.server._ray import RayExecutor

            self._ray = RayExecutor(settings=settings, db=db, hub=hub, plane_id=plane_id)

    @property
    def beat_interval(self) -> float:
        return min(self.settings.lease_ttl / 3, 5.0)

    async def start(self) -> None:
        """Announce this plane, fail jobs orphaned by dead planes, then start scheduling."""
        self._loop = asyncio.get_running_loop()
        await self._keep_lease()
        self._task = asyncio.create_task(self._run(), name="arkor-supervisor")

    def wake(self) -> None:
        """Look for work now (a job was queued or a worker ended); any thread may call it."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Stop scheduling and every worker; their jobs go back to the queue, to resume.

        Workers get SIGTERM, finish the step they are in (so no checkpoint is left half
        written) and exit without ending their job; one still running after
        ``_STOP_TIMEOUT`` is killed. The next plane on this home resumes each job from its
        newest checkpoint, and the console says so.
        """
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=_STOP_TIMEOUT)
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if self._watchers:
            await asyncio.wait(self._watchers)
        await in_thread(store.remove_plane, db=self.db, plane_id=self.plane_id)
        if self._released:
            logger.warning("%s", resume_notice(len(self._released), self.settings.home))

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if time.monotonic() - self._last_beat >= self.beat_interval:
                    await self._keep_lease()
                await self._fill()
            except Exception:  # a database hiccup must not end scheduling for good
                logger.exception("The job scheduler hit an error; retrying.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.beat_interval)

    async def _keep_lease(self) -> None:
        """Beat this plane's heartbeat, fail orphans of dead planes, kill workers ignoring a cancel."""
        self._last_beat = time.monotonic()
        await in_thread(
            store.beat_plane,
            db=self.db,
            plane_id=self.plane_id,
            pid=os.getpid(),
            url=self.settings.plane_url,
            started_at=self.started_at,
        )
        recovered = await in_thread(
            store.recover_orphans,
            db=self.db,
            lease_ttl=self.settings.lease_ttl,
            max_resumes=self.settings.max_resumes,
            reason=orphan_reason,
        )
        for job_id in recovered.resumed:
            logger.warning("Job %s lost its control plane; resuming from its checkpoint.", job_id)
        for job_id in recovered.failed:
            logger.warning("Job %s lost its control plane; marked failed.", job_id)
        for job_id in recovered.cancelled:
            logger.warning("Job %s lost its control plane while cancelling; cancelled.", job_id)
        for job_id in [*recovered.failed, *recovered.cancelled]:
            self.hub.notify(job_id)
        if recovered.resumed:
            self.wake()
        overdue = await in_thread(
            store.overdue_cancels, db=self.db, owner=self.plane_id, grace=self.settings.cancel_grace
        )
        if self._ray is not None:
            await self._ray.stop(overdue)
            await self._ray.poll()
        for job_id in overdue:
            process = self._workers.get(job_id)
            if process is not None and job_id not in self._killed:
                logger.warning("The worker of job %s ignored a cancel; stopping it.", job_id)
                self._killed.add(job_id)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        swept = await in_thread(sweep_partial_uploads, db=self.db, settings=self.settings)
        if swept:
            logger.info("Dropped the unfinished uploads of ended jobs %s.", ", ".join(swept))

    async def _fill(self) -> None:
        while not self._stopping:
            token = secrets.token_urlsafe(32)
            ray = self._ray
            job = await in_thread(
                store.claim_next_job,
                db=self.db,
                plane_id=self.plane_id,
                # Ray queues jobs until it has their resources; locally, max_jobs does
                max_jobs=None if ray else self.settings.max_jobs,
                token_hash=store.hash_token(token),
                lease_ttl=self.settings.lease_ttl,
                executor=self.settings.executor,
                node=None if ray else socket.gethostname(),
                place_only=ray is not None,
            )
            if job is None:
                return
            if ray is None:
                await self._spawn(job.id, token)
            elif not await ray.place(job, token):
                return  # the cluster is unreachable: try again at the next beat

    async def _spawn(self, job_id: str, token: str) -> None:
        settings = self.settings
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.logs_dir / f"{job_id}.log"
        command = [
            *settings.worker_command,
            "--plane-url",
            settings.plane_url,
            "--job-id",
            job_id,
            "--artifacts",
            str(settings.artifacts_dir / job_id),
        ]
        try:
            with open_private(log_path, "ab") as log:
                log_start = os.fstat(log.fileno()).st_size
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, "ARKOR_HOME": str(settings.home), JOB_TOKEN_ENV: token},
                    start_new_session=True,  # Ctrl-C reaches the plane, which stops workers itself
                    umask=PRIVATE_UMASK,
                )
        except OSError as error:
            await self._end(job_id, f"The worker could not be started ({command[0]}): {error}.")
            return
        logger.info("Job %s started in worker process %d.", job_id, process.pid)
        await in_thread(
            store.set_placement, db=self.db, job_id=job_id, executor_job_id=str(process.pid)
        )
        self._workers[job_id] = process
        watcher = asyncio.create_task(self._watch(job_id, process, log_path, log_start))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(
        self, job_id: str, process: asyncio.subprocess.Process, log: Path, log_start: int
    ) -> None:
        code = await process.wait()
        self._workers.pop(job_id, None)
        self._killed.discard(job_id)
        logger.info("Job %s: worker process %d exited with code %d.", job_id, process.pid, code)
        if self._stopping or code == WORKER_SUSPENDED_EXIT:
            await self._release(job_id)
        else:
            reason = await in_thread(crash_reason, code=code, log=log, start=log_start)
            await self._end(job_id, reason)
        self.wake()

    async def _release(self, job_id: str) -> None:
        """Put a job whose worker stopped before it ended back in the queue, to resume."""
        job = await in_thread(store.get_job, db=self.db, job_id=job_id)
        if job is None or job.terminal:
            return
        if job.cancel_requested:  # it was asked to stop anyway
            await in_thread(store.cancel_unfinished, db=self.db, job_id=job_id)
            self.hub.notify(job_id)
        elif await in_thread(store.release_job, db=self.db, job_id=job_id, owner=self.plane_id):
            self._released.add(job_id)
            logger.info("Job %s is back in the queue, to resume from its last checkpoint.", job_id)

    async def _end(self, job_id: str, reason: str) -> None:
        """Give a job whose worker is gone its terminal event, unless it already has one."""
        job = await in_thread(store.get_job, db=self.db, job_id=job_id)
        if job is None or job.terminal:
            return
        if job.cancel_requested:
            await in_thread(store.cancel_unfinished, db=self.db, job_id=job_id)
        else:
            await in_thread(store.fail_job, db=self.db, job_id=job_id, error=reason)
        self.hub.notify(job_id)
