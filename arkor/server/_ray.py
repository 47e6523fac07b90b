"""Job workers on a Ray cluster, submitted through Ray's Job Submission API.

Each job's worker is a Ray job: the same entry point as a local worker
(``python -m arkor.engine.worker``) with ``--artifacts plane``, so it uploads its files to
this plane over HTTP (or, with ``ray_artifacts``, writes them straight into this plane's
artifacts folder as the nodes mount it), and the job's token in its ``runtime_env``. Ray holds the job until a
node has the resources it asks for (``trainer.resources``, else the plane's defaults); until
its worker first calls, the job stays ``queued`` here with the reason Ray gives. The plane
polls Ray for the jobs it submitted: a Ray job that ended without its job ending (a killed
worker, a node that went away) is recovered by the rules of an orphaned job: it resumes
from its newest uploaded checkpoint, or fails with the worker's last output. A worker
silent past the lease is stopped and recovered the same way. A cancel reaches the worker
through its heartbeat; a Ray job still pending, or one that ignores the cancel, is stopped.

A plane that stops leaves its Ray jobs running: their workers keep reporting to the plane's
URL, and the next plane on this home takes them over (:func:`store.adopt_jobs`).
"""

from __future__ import annotations

import logging
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arkor.cloud import JobConfig
from arkor.config import memory_bytes
from arkor.errors import ArkorError
from arkor.server import _store as store
from arkor.server._db import Database, in_thread
from arkor.server._events import EventHub
from arkor.server._settings import Settings

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

logger = logging.getLogger("arkor.server")

RAY_EXTRA_HINT = "pip install 'arkor[ray]'"
_ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Request:
    """What one job's worker asks Ray for."""

    cpus: float
    gpus: float
    memory: int | None

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU" + ("" if self.cpus == 1 else "s")]
        if self.gpus:
            parts.append(f"{self.gpus:g} GPU" + ("" if self.gpus == 1 else "s"))
        if self.memory:
            parts.append(f"{self.memory / (1 << 30):.3g} GiB of memory")
        return ", ".join(parts)

    def fits(self, total: dict[str, float]) -> bool:
        """Whether a node with ``total`` resources could ever run the worker."""
        return (
            total.get("CPU", 0.0) >= self.cpus
            and total.get("GPU", 0.0) >= self.gpus
            and (self.memory is None or total.get("memory", 0.0) >= self.memory)
        )


def request_for(config: JobConfig, settings: Settings) -> Request:
    """The job's ``trainer.resources``, the plane's defaults where unset."""
    resources = config.resources
    cpus = resources.cpus if resources and resources.cpus is not None else settings.ray_cpus
    gpus = resources.gpus if resources and resources.gpus is not None else settings.ray_gpus
    memory = memory_bytes(resources.memory) if resources and resources.memory else None
    return Request(cpus=float(cpus), gpus=float(gpus), memory=memory)


class RayCluster:
    """Blocking calls to the cluster's Job Submission API (run them in a thread)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.ray_address is not None
        self.settings = settings
        self.address = settings.ray_address
        self._client: JobSubmissionClient | None = None

    def client(self) -> JobSubmissionClient:
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise ArkorError(
                    f"The ray executor needs Ray's job client on the plane: {RAY_EXTRA_HINT}."
                ) from None
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError
                raise ArkorError(
                    f"The Ray cluster at {self.address} could not be reached: {error}"
                ) from error
        return self._client

    def submit(self, job: store.JobRow, token: str) -> str:
        """Submit the job's worker; its submission id (new for every run of the job)."""
        settings = self.settings
        request = request_for(JobConfig.model_validate_json(job.config), settings)
        runtime_env = dict(settings.ray_runtime_env or {})
        runtime_env["env_vars"] = {
            **dict(runtime_env.get("env_vars") or {}),
            "ARKOR_JOB_TOKEN": token,
        }
        entrypoint = shlex.join(
            [
                *settings.ray_worker_command,
                "--plane-url",
                settings.plane_url,
                "--job-id",
                job.id,
                "--artifacts",
                f"{settings.ray_artifacts}/{job.id}" if settings.ray_artifacts else "plane",
            ]
        )
        submission_id = f"arkor-{job.id}-{secrets.token_hex(3)}"
        options: dict[str, Any] = {
            "entrypoint_num_cpus": request.cpus,
            "entrypoint_num_gpus": request.gpus,
        }
        if request.memory:
            options["entrypoint_memory"] = request.memory
        return str(
            self.client().submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata={"arkor_job_id": job.id, "arkor_job_name": job.name[:100]},
                **options,
            )
        )

    def info(self, submission_id: str) -> JobDetails:
        return self.client().get_job_info(submission_id)

    def stop(self, submission_id: str) -> None:
        self.client().stop_job(submission_id)

    def log_tail(self, submission_id: str) -> list[str]:
        try:
            text = self.client().get_job_logs(submission_id)
        except Exception:  # the logs are a courtesy: the reason is said without them
            return []
        return [line.rstrip() for line in text.splitlines() if line.strip()][-_LOG_TAIL_LINES:]

    def largest_nodes(self) -> list[dict[str, float]]:
        """Every alive node's total resources (for saying a request can never fit)."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.address, filters=[("state", "=", "ALIVE")])
        return [dict(node.resources_total) for node in nodes]


def pending_reason(address: str, request: Request, nodes: list[dict[str, float]] | None) -> str:
    """Why a job submitted to Ray still waits."""
    wanted = request.describe()
    if nodes is not None and not any(request.fits(node) for node in nodes):
        largest = max(
            (f"{n.get('CPU', 0):g} CPUs, {n.get('GPU', 0):g} GPUs" for n in nodes), default="none"
        )
        return (
            f"No node of the Ray cluster at {address} has {wanted} (the nodes offer: "
            f"{largest}). The job waits until such a node joins; or cancel it and ask for "
            "less in [trainer.resources]."
        )
    return f"Waiting for {wanted} to be free on the Ray cluster at {address}."


def ended_reason(submission_id: str, info: JobDetails, tail: list[str]) -> str:
    """Why a job failed whose Ray job ended before the worker reported how the run ended."""
    how = f"ended {info.status}"
    if info.driver_exit_code is not None:
        how += f" (exit code {info.driver_exit_code})"
    said = f": {info.message}" if info.message else ""
    if not tail:
        return (
            f"The worker's Ray job {submission_id} {how} before reporting how the run ended{said}"
        )
    output = "\n".join(f"  {line}" for line in tail)
    return (
        f"The worker's Ray job {submission_id} {how} before reporting how the run ended: "
        f"{tail[-1].strip()}\nIts last output:\n{output}\nThe whole log: `ray job logs "
        f"{submission_id}`"
    )


def _silent_reason(submission_id: str) -> Callable[[store.JobRow, bool], str]:
    """Why a job failed whose worker went silent and could not resume."""

    def reason(job: store.JobRow, checkpointed: bool) -> str:
        why = (
            "and it has resumed as often as allowed (ARKOR_MAX_RESUMES)"
            if checkpointed
            else "before its first checkpoint, so there was nothing to resume from"
        )
        return (
            f"The worker of this job (Ray job {submission_id}) stopped answering {why}; "
            "start it again."
        )

    return reason


def _node(info: JobDetails) -> str | None:
    address = info.driver_info.node_ip_address if info.driver_info else None
    node_id = info.driver_node_id
    if node_id and address:
        return f"{address} (Ray node {node_id[:12]})"
    return address or (f"Ray node {node_id[:12]}" if node_id else None)


class RayExecutor:
    """The supervisor's side for ``executor = "ray"``: submit, watch, stop, recover."""

    def __init__(self, *, settings: Settings, db: Database, hub: EventHub, plane_id: str) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.plane_id = plane_id
        self.cluster = RayCluster(settings)
        self._live: dict[str, str] = {}
        """Submission ids of the jobs last seen unfinished, by job id."""
        self._draining: dict[str, tuple[str, float]] = {}
        """Ended jobs whose Ray job still runs: submission id and when to stop it."""

    async def place(self, job: store.JobRow, token: str) -> bool:
        """Submit ``job``'s worker; False (the job back in the queue) when Ray can't be reached."""
        try:
            submission_id = await in_thread(self.cluster.submit, job=job, token=token)
        except Exception as error:
            reason = (
                f"The Ray cluster at {self.cluster.address} did not take the job ({error}); "
                "retrying."
            )
            logger.warning("Job %s: %s", job.id, reason)
            await in_thread(
                store.unplace_job, db=self.db, job_id=job.id, owner=self.plane_id, reason=reason
            )
            return False
        request = request_for(JobConfig.model_validate_json(job.config), self.settings)
        await in_thread(
            store.set_placement,
            db=self.db,
            job_id=job.id,
            executor_job_id=submission_id,
            queue_reason=pending_reason(self.cluster.address, request, None),
        )
        self._live[job.id] = submission_id
        logger.info("Job %s submitted to Ray as %s.", job.id, submission_id)
        return True

    async def poll(self) -> None:
        """Follow every Ray job of this plane's jobs; recover those whose worker is gone."""
        await in_thread(
            store.adopt_jobs,
            db=self.db,
            plane_id=self.plane_id,
            executor="ray",
            lease_ttl=self.settings.lease_ttl,
        )
        jobs = await in_thread(store.executor_jobs, db=self.db, owner=self.plane_id, executor="ray")
        current = {job.id: job.executor_job_id for job in jobs if job.executor_job_id}
        for job_id, submission_id in self._live.items():
            if job_id not in current:  # the job ended (or went back to the queue) since
                self._draining.setdefault(
                    job_id, (submission_id, time.monotonic() + self.settings.cancel_grace)
                )
        self._live = current
        nodes: list[dict[str, float]] | None = None
        for job in jobs:
            if job.executor_job_id is None:
                continue
            try:
                info = await in_thread(self.cluster.info, submission_id=job.executor_job_id)
            except Exception as error:
                logger.warning("Job %s: Ray did not answer about it (%s).", job.id, error)
                continue
            status = str(info.status)
            if status == "PENDING" and job.status == "queued":
                if nodes is None:
                    nodes = await self._nodes()
                request = request_for(JobConfig.model_validate_json(job.config), self.settings)
                reason = pending_reason(self.cluster.address, request, nodes)
                if reason != job.queue_reason:
                    await in_thread(
                        store.set_placement, db=self.db, job_id=job.id, queue_reason=reason
                    )
            elif status == "RUNNING":
                node = _node(info)
                if node and node != job.node:
                    await in_thread(store.set_placement, db=self.db, job_id=job.id, node=node)
            elif status in _ENDED:
                await self._recover(job, job.executor_job_id, info)
        await self._stop_stale()
        await self._drain()

    async def stop(self, job_ids: list[str]) -> None:
        """Stop the Ray jobs of ``job_ids`` (their workers ignored a cancel)."""
        for job_id in job_ids:
            submission_id = self._live.get(job_id)
            if submission_id is not None:
                logger.warning(
                    "The worker of job %s ignored a cancel; stopping its Ray job.", job_id
                )
                await self._stop(submission_id)

    async def _nodes(self) -> list[dict[str, float]] | None:
        try:
            return await in_thread(self.cluster.largest_nodes)
        except Exception:  # the reason then just says it waits
            return None

    async def _stop(self, submission_id: str) -> None:
        try:
            await in_thread(self.cluster.stop, submission_id=submission_id)
        except Exception as error:
            logger.warning("Ray did not stop its job %s: %s", submission_id, error)

    async def _recover(self, job: store.JobRow, submission_id: str, info: JobDetails) -> None:
        """The Ray job ended but the job did not: resume it, or fail it with the worker's output."""
        tail = await in_thread(self.cluster.log_tail, submission_id=submission_id)
        reason = ended_reason(submission_id, info, tail)
        if job.status == "queued" and not job.cancel_requested:  # it never started
            if await in_thread(store.fail_job, db=self.db, job_id=job.id, error=reason):
                logger.warning("Job %s: its Ray job ended before the worker started.", job.id)
                self.hub.notify(job.id)
            return
        outcome = await in_thread(
            store.recover_job,
            db=self.db,
            job_id=job.id,
            max_resumes=self.settings.max_resumes,
            reason=lambda _job, checkpointed: (
                reason
                if checkpointed
                else f"{reason}\nThere was no checkpoint to resume from; start it again."
            ),
        )
        self._live.pop(job.id, None)
        if outcome == "resumed":
            logger.warning(
                "Job %s: its Ray job %s ended (%s); resuming from its newest checkpoint.",
                job.id,
                submission_id,
                info.status,
            )
        elif outcome is not None:
            logger.warning("Job %s: its Ray job %s ended; %s.", job.id, submission_id, outcome)
            self.hub.notify(job.id)

    async def _stop_stale(self) -> None:
        """Stop the Ray jobs whose worker went silent past the lease, and recover their jobs."""
        stale = await in_thread(
            store.stale_jobs,
            db=self.db,
            owner=self.plane_id,
            executor="ray",
            lease_ttl=self.settings.lease_ttl,
        )
        for job in stale:
            if job.executor_job_id is None:
                continue
            logger.warning(
                "Job %s: its worker has been silent for %.0f s; stopping its Ray job.",
                job.id,
                self.settings.lease_ttl,
            )
            await self._stop(job.executor_job_id)
            outcome = await in_thread(
                store.recover_job,
                db=self.db,
                job_id=job.id,
                max_resumes=self.settings.max_resumes,
                reason=_silent_reason(job.executor_job_id),
            )
            self._live.pop(job.id, None)
            if outcome not in (None, "resumed"):
                self.hub.notify(job.id)

    async def _drain(self) -> None:
        """Stop the Ray jobs of ended jobs: at once after a cancel, else after the grace."""
        for job_id, (submission_id, deadline) in list(self._draining.items()):
            try:
                info = await in_thread(self.cluster.info, submission_id=submission_id)
            except Exception:
                continue
            if str(info.status) in _ENDED:
                del self._draining[job_id]
                continue
            job = await in_thread(store.get_job, db=self.db, job_id=job_id)
            cancelled = job is not None and job.status == "cancelled"
            if cancelled or time.monotonic() > deadline or str(info.status) == "PENDING":
                await self._stop(submission_id)
