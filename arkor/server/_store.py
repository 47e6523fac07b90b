"""Data access for the plane: keyword-only functions over :class:`~arkor.server._db.Database`.

Rows are server-private dataclasses; routes turn them into wire models. Every step that
reads and then writes runs in one ``BEGIN IMMEDIATE`` transaction, so two planes sharing
the file (DESIGN.md decision 4) can't claim one job twice or interleave a job's events.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from arkor.cloud import (
    TERMINAL_EVENT_TYPES,
    TERMINAL_JOB_STATUSES,
    BlobDatasetSource,
    JobConfig,
    TrainingFailed,
    TrainingJob,
    utc_now,
)
from arkor.server._db import Database
from arkor.server._events import FrameBatch, frame, frame_data, frame_head

_STATUS_AFTER = {
    "training.completed": "completed",
    "training.failed": "failed",
    "training.cancelled": "cancelled",
}


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` was reused with a different request body."""


@dataclass(frozen=True)
class Principal:
    """The identity behind a bearer token."""

    user_id: str
    kind: str
    anonymous_id: str | None
    token_id: str | None = None
    """The public id of the token presented (listed and revoked by it)."""


@dataclass(frozen=True)
class TokenRow:
    id: str
    created_at: str


@dataclass(frozen=True)
class OrgRow:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class ProjectRow:
    id: str
    org_id: str
    slug: str
    name: str


@dataclass(frozen=True)
class UploadRow:
    id: str
    project_id: str
    sha256: str
    size: int
    name: str | None


def _stored_config(text: str) -> JobConfig:
    """A stored job's config. Settings an older plane stored that today's bounds refuse
    (NaN, out of range, unknown keys) are left out, so such a job still lists."""
    try:
        return JobConfig.model_validate_json(text)
    except ValidationError as error:
        data = json.loads(text)  # Python's json reads the NaN an older plane wrote
        for issue in error.errors():
            if issue["loc"] and issue["loc"][0] not in ("model", "datasetSource"):
                data.pop(issue["loc"][0], None)
        return JobConfig.model_validate(data)


REDACTED = "***"
"""What the API shows in place of a secret a job was given."""


@dataclass(frozen=True)
class JobRow:
    id: str
    org_id: str
    project_id: str
    name: str
    status: str
    config: str
    error: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    owner: str | None
    cancel_requested: bool
    resumes: int = 0
    """Times the job was re-queued to resume after its plane died."""
    executor: str | None = None
    """``local`` or ``ray``: what runs the job's worker (None before one was started)."""
    executor_job_id: str | None = None
    """The worker's id there: its process id, or the Ray job's submission id."""
    node: str | None = None
    """The machine the worker runs on, as the executor names it."""
    queue_reason: str | None = None
    """Why a queued job waits (a Ray cluster without the resources it asks for)."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def to_wire(self) -> TrainingJob:
        """The job as the API shows it: a blob dataset's token reads ``***``.

        The plane keeps the token for the job's worker (:meth:`to_worker`), but no answer
        to a person or script carries it."""
        job = self.to_worker()
        source = job.config.dataset_source
        if not isinstance(source, BlobDatasetSource) or source.token is None:
            return job
        hidden = source.model_copy(update={"token": REDACTED})
        config = job.config.model_copy(update={"dataset_source": hidden})
        return job.model_copy(update={"config": config})

    def to_worker(self) -> TrainingJob:
        """The job as its worker needs it, secrets included (only for the job's token)."""
        return TrainingJob.model_validate(
            {
                "id": self.id,
                "orgId": self.org_id,
                "projectId": self.project_id,
                "name": self.name,
                "status": self.status,
                "config": _stored_config(self.config),
                "error": self.error,
                "createdAt": self.created_at,
                "startedAt": self.started_at,
                "completedAt": self.completed_at,
                "placement": {
                    "executor": self.executor,
                    "executorJobId": self.executor_job_id,
                    "node": self.node,
                }
                if self.executor
                else None,
                "queueReason": self.queue_reason if self.status == "queued" else None,
            }
        )


@dataclass(frozen=True)
class EventAck:
    """What an event append answers a worker: the stored id and whether to stop."""

    id: int
    cancel_requested: bool
    frame: str | None = None
    """The SSE frame stored, for the job's followers; None when a retry stored nothing."""


def new_id(prefix: str) -> str:
    """An opaque, unguessable id such as ``job_3f2a...``."""
    return f"{prefix}_{secrets.token_hex(10)}"


def hash_token(token: str) -> str:
    """Tokens are 32 random bytes, so an unsalted sha256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- identity ------------------------------------------------------------------------------


def plane_identity(*, db: Database) -> str:
    """The plane's stable id: made with its database, so every plane serving it is one plane."""
    row = db.connection().execute("SELECT value FROM meta WHERE key = 'plane_id'").fetchone()
    return str(row["value"])


def create_anonymous_identity(*, db: Database, token_hash: str) -> tuple[Principal, OrgRow]:
    """A new anonymous user, its personal org (as owner) and its token.

    The org's slug carries the org id's 80 random bits, so two mints never collide.
    """
    with db.transaction() as connection:
        return _new_identity(connection, token_hash)


def home_owner_identity(
    *, db: Database, token_hash: str, adopt_token_hash: str | None = None
) -> tuple[Principal, OrgRow]:
    """A new token for the identity that owns the plane's home.

    The first claim makes the owner: the anonymous identity behind ``adopt_token_hash``
    when that token is valid (a sign-in from before the plane knew its owner), else a new one.
    """
    with db.transaction() as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = 'owner_user_id'").fetchone()
        owner: str | None = row["value"] if row else None
        if owner is None and adopt_token_hash is not None:
            adopted = connection.execute(
                "SELECT u.id FROM tokens t JOIN users u ON u.id = t.user_id "
                "WHERE t.hash = ? AND u.kind = 'anonymous'",
                (adopt_token_hash,),
            ).fetchone()
            owner = adopted["id"] if adopted else None
        if owner is None:
            user, org = _new_identity(connection, token_hash)
            owner = user.user_id
        else:
            token_id = _insert_token(connection, token_hash, owner)
            found = connection.execute(
                "SELECT kind, anonymous_id FROM users WHERE id = ?", (owner,)
            ).fetchone()
            user = Principal(owner, found["kind"], found["anonymous_id"], token_id)
            org_row = connection.execute(
                "SELECT o.id, o.slug, o.name FROM orgs o JOIN memberships m ON m.org_id = o.id "
                "WHERE m.user_id = ? AND m.role = 'owner' ORDER BY o.created_at LIMIT 1",
                (owner,),
            ).fetchone()
            org = OrgRow(org_row["id"], org_row["slug"], org_row["name"])
        connection.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('owner_user_id', ?)", (owner,)
        )
    return user, org


def _new_identity(connection: sqlite3.Connection, token_hash: str) -> tuple[Principal, OrgRow]:
    now = utc_now()
    org_id = new_id("org")
    suffix = org_id.removeprefix("org_")
    org = OrgRow(org_id, f"anon-{suffix}", f"Personal ({suffix[:8]})")
    user_id, anonymous_id = new_id("user"), new_id("anon")
    connection.execute(
        "INSERT INTO users (id, kind, anonymous_id, created_at) VALUES (?, 'anonymous', ?, ?)",
        (user_id, anonymous_id, now),
    )
    connection.execute(
        "INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
        (org.id, org.slug, org.name, now),
    )
    connection.execute(
        "INSERT INTO memberships (org_id, user_id, role) VALUES (?, ?, 'owner')",
        (org.id, user_id),
    )
    token_id = _insert_token(connection, token_hash, user_id)
    return Principal(user_id, "anonymous", anonymous_id, token_id), org


def _insert_token(connection: sqlite3.Connection, token_hash: str, user_id: str) -> str:
    token_id = new_id("tok")
    connection.execute(
        "INSERT INTO tokens (hash, id, user_id, created_at) VALUES (?, ?, ?, ?)",
        (token_hash, token_id, user_id, utc_now()),
    )
    return token_id


def principal_for_token(*, db: Database, token_hash: str) -> Principal | None:
    row = (
        db.connection()
        .execute(
            "SELECT u.id, u.kind, u.anonymous_id, t.id AS token_id FROM tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
            (token_hash,),
        )
        .fetchone()
    )
    return Principal(row["id"], row["kind"], row["anonymous_id"], row["token_id"]) if row else None


def list_tokens(*, db: Database, user_id: str) -> list[TokenRow]:
    """The identity's tokens, oldest first (ids and dates only: the secrets are not kept)."""
    rows = db.connection().execute(
        "SELECT id, created_at FROM tokens WHERE user_id = ? ORDER BY created_at, id", (user_id,)
    )
    return [TokenRow(row["id"], row["created_at"]) for row in rows]


def revoke_token(*, db: Database, user_id: str, token_id: str) -> bool:
    """Delete one of the identity's tokens; False when it has none with that id."""
    with db.transaction() as connection:
        deleted = connection.execute(
            "DELETE FROM tokens WHERE id = ? AND user_id = ?", (token_id, user_id)
        ).rowcount
    return deleted > 0


def user_orgs(*, db: Database, user_id: str) -> list[OrgRow]:
    rows = db.connection().execute(
        "SELECT o.id, o.slug, o.name FROM orgs o JOIN memberships m ON m.org_id = o.id "
        "WHERE m.user_id = ? ORDER BY o.slug",
        (user_id,),
    )
    return [OrgRow(row["id"], row["slug"], row["name"]) for row in rows]


def member_org(*, db: Database, user_id: str, org_slug: str) -> OrgRow | None:
    """The org named ``org_slug`` when ``user_id`` belongs to it, else None (never 'forbidden')."""
    row = (
        db.connection()
        .execute(
            "SELECT o.id, o.slug, o.name FROM orgs o JOIN memberships m ON m.org_id = o.id "
            "WHERE m.user_id = ? AND o.slug = ?",
            (user_id, org_slug),
        )
        .fetchone()
    )
    return OrgRow(row["id"], row["slug"], row["name"]) if row else None


# --- projects ------------------------------------------------------------------------------


def list_projects(*, db: Database, org_id: str) -> list[ProjectRow]:
    rows = db.connection().execute(
        "SELECT id, org_id, slug, name FROM projects WHERE org_id = ? ORDER BY created_at, slug",
        (org_id,),
    )
    return [_project(row) for row in rows]


def create_project(*, db: Database, org_id: str, slug: str, name: str) -> ProjectRow | None:
    """The new project, or None when the org already has one with ``slug``."""
    project = ProjectRow(new_id("proj"), org_id, slug, name)
    try:
        with db.transaction() as connection:
            connection.execute(
                "INSERT INTO projects (id, org_id, slug, name, created_at) VALUES (?, ?, ?, ?, ?)",
                (project.id, org_id, slug, name, utc_now()),
            )
    except sqlite3.IntegrityError:
        return None
    return project


def member_project(
    *, db: Database, user_id: str, org_slug: str, project_slug: str
) -> ProjectRow | None:
    """The project when ``user_id`` belongs to its org; None when it doesn't exist *or* they don't."""
    row = (
        db.connection()
        .execute(
            "SELECT p.id, p.org_id, p.slug, p.name FROM projects p "
            "JOIN orgs o ON o.id = p.org_id JOIN memberships m ON m.org_id = o.id "
            "WHERE m.user_id = ? AND o.slug = ? AND p.slug = ?",
            (user_id, org_slug, project_slug),
        )
        .fetchone()
    )
    return _project(row) if row else None


def _project(row: sqlite3.Row) -> ProjectRow:
    return ProjectRow(row["id"], row["org_id"], row["slug"], row["name"])


# --- uploads -------------------------------------------------------------------------------


def find_upload(
    *, db: Database, project_id: str, upload_id: str | None = None, sha256: str | None = None
) -> UploadRow | None:
    """The project's upload with ``upload_id``, or else the one with ``sha256``."""
    query = "SELECT * FROM uploads WHERE project_id = ? AND " + (
        "id = ?" if upload_id is not None else "sha256 = ?"
    )
    row = db.connection().execute(query, (project_id, upload_id or sha256)).fetchone()
    return _upload(row) if row else None


def create_upload(
    *, db: Database, project_id: str, sha256: str, size: int, name: str | None
) -> tuple[UploadRow, bool]:
    """The project's upload of these bytes and whether it is new (False: it already had them)."""
    with db.transaction() as connection:
        row = connection.execute(
            "SELECT * FROM uploads WHERE project_id = ? AND sha256 = ?", (project_id, sha256)
        ).fetchone()
        if row is not None:
            return _upload(row), False
        upload = UploadRow(new_id("upl"), project_id, sha256, size, name)
        connection.execute(
            "INSERT INTO uploads (id, project_id, sha256, size, name, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (upload.id, project_id, sha256, size, name, utc_now()),
        )
    return upload, True


def _upload(row: sqlite3.Row) -> UploadRow:
    return UploadRow(row["id"], row["project_id"], row["sha256"], row["size"], row["name"])


# --- jobs ----------------------------------------------------------------------------------


def create_job(
    *,
    db: Database,
    project: ProjectRow,
    name: str,
    config: dict[str, Any],
    plane_id: str,
    idempotency_key: str | None = None,
    idempotency_ttl: float = 24 * 3600.0,
) -> tuple[JobRow, bool]:
    """A new queued job, or (with an ``idempotency_key`` seen within the TTL) the one it made.

    The second value is True for a replay. The same key with another body raises
    :class:`IdempotencyConflict`.
    """
    config_json = json.dumps(config, sort_keys=True, separators=(",", ":"))
    body_sha256 = hashlib.sha256(f"{name}\0{config_json}".encode()).hexdigest()
    now = time.time()
    with db.transaction() as connection:
        if idempotency_key is not None:
            seen = connection.execute(
                "SELECT body_sha256, job_id, created_at FROM idempotency_keys "
                "WHERE project_id = ? AND key = ?",
                (project.id, idempotency_key),
            ).fetchone()
            if seen is not None and seen["created_at"] >= now - idempotency_ttl:
                if seen["body_sha256"] != body_sha256:
                    raise IdempotencyConflict(idempotency_key)
                job = _job_where(connection, "id = ?", (seen["job_id"],))
                if job is not None:
                    return job, True
            connection.execute(
                "DELETE FROM idempotency_keys WHERE project_id = ? AND key = ?",
                (project.id, idempotency_key),
            )
        job_id = new_id("job")
        connection.execute(
            "INSERT INTO jobs (id, org_id, project_id, name, status, config, created_at, "
            "created_by) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, project.org_id, project.id, name, config_json, utc_now(), plane_id),
        )
        if idempotency_key is not None:
            connection.execute(
                "INSERT INTO idempotency_keys (project_id, key, body_sha256, job_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (project.id, idempotency_key, body_sha256, job_id, now),
            )
        job = _job_where(connection, "id = ?", (job_id,))
    assert job is not None
    return job, False


def list_jobs(
    *, db: Database, project_id: str, limit: int, before: int | None = None
) -> tuple[list[JobRow], int | None]:
    """A page of the project's jobs, newest first: at most ``limit`` of those submitted before
    the job numbered ``before``, and the number to ask for the next page with (None: last)."""
    rows = (
        db.connection()
        .execute(
            "SELECT * FROM jobs WHERE project_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (project_id, before if before is not None else 2**63 - 1, limit + 1),
        )
        .fetchall()
    )
    page = rows[:limit]
    return [_job(row) for row in page], page[-1]["seq"] if len(rows) > limit else None


def get_job(*, db: Database, job_id: str, project_id: str | None = None) -> JobRow | None:
    """The job, or None when it doesn't exist or (with ``project_id``) belongs elsewhere."""
    if project_id is None:
        return _job_where(db.connection(), "id = ?", (job_id,))
    return _job_where(db.connection(), "id = ? AND project_id = ?", (job_id, project_id))


CancelOutcome = Literal["terminal", "cancelled", "requested"]


def request_cancel(*, db: Database, job_id: str) -> CancelOutcome:
    """Cancel a queued job at once, ask a running one to stop, refuse a finished one."""
    with db.transaction() as connection:
        job = _job_where(connection, "id = ?", (job_id,))
        if job is None or job.terminal:
            return "terminal"
        if job.status == "queued":
            _append(connection, job, "training.cancelled", {"type": "training.cancelled"})
            return "cancelled"
        connection.execute(
            "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?",
            (time.time(), job_id),
        )
    return "requested"


def claim_next_job(
    *,
    db: Database,
    plane_id: str,
    max_jobs: int | None,
    token_hash: str,
    lease_ttl: float,
    executor: str = "local",
    node: str | None = None,
    place_only: bool = False,
) -> JobRow | None:
    """Take the oldest job this plane may run, owned by it, for ``executor``.

    A plane runs the jobs it accepted, and those of planes that have stopped; at most
    ``max_jobs`` at once (None: no limit, the executor queues them). The job moves from
    ``queued`` to ``running``, or with ``place_only`` stays ``queued`` (owned, with its
    worker's token) until that worker first calls: a Ray job waits there for the cluster's
    resources.
    """
    now = time.time()
    with db.transaction() as connection:
        if max_jobs is not None:
            (running,) = connection.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND owner = ?", (plane_id,)
            ).fetchone()
            if running >= max_jobs:
                return None
        row = connection.execute(
            "SELECT id FROM jobs j WHERE status = 'queued' AND owner IS NULL AND (created_by = ? "
            "OR NOT EXISTS (SELECT 1 FROM planes p WHERE p.id = j.created_by AND "
            "p.heartbeat_at > ?)) ORDER BY seq LIMIT 1",
            (plane_id, now - lease_ttl),
        ).fetchone()
        if row is None:
            return None
        if place_only:
            connection.execute(
                "UPDATE jobs SET owner = ?, lease_at = ?, token_hash = ?, executor = ?, "
                "executor_job_id = NULL, node = NULL, queue_reason = ? WHERE id = ?",
                (plane_id, now, token_hash, executor, f"Submitting to {executor}.", row["id"]),
            )
        else:
            connection.execute(
                "UPDATE jobs SET status = 'running', owner = ?, lease_at = ?, token_hash = ?, "
                "started_at = COALESCE(started_at, ?), executor = ?, executor_job_id = NULL, "
                "node = ?, queue_reason = NULL WHERE id = ?",
                (plane_id, now, token_hash, utc_now(), executor, node, row["id"]),
            )
        return _job_where(connection, "id = ?", (row["id"],))


def set_placement(
    *,
    db: Database,
    job_id: str,
    executor_job_id: str | None = None,
    node: str | None = None,
    queue_reason: str | None = None,
) -> None:
    """Record the worker's id in its executor, its node, or why the job still waits."""
    for column, value in (
        ("executor_job_id", executor_job_id),
        ("node", node),
        ("queue_reason", queue_reason),
    ):
        if value is not None:
            db.connection().execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))


def unplace_job(*, db: Database, job_id: str, owner: str, reason: str) -> bool:
    """Put a job that could not be submitted back in the queue, saying why it waits."""
    cursor = db.connection().execute(
        "UPDATE jobs SET owner = NULL, lease_at = NULL, token_hash = NULL, executor_job_id = NULL, "
        "queue_reason = ? WHERE id = ? AND status = 'queued' AND owner = ?",
        (reason, job_id, owner),
    )
    return cursor.rowcount > 0


def start_placed(*, db: Database, job_id: str) -> None:
    """A placed job's worker called for the first time: the job is running from now on."""
    db.connection().execute(
        "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), lease_at = ?, "
        "queue_reason = NULL WHERE id = ? AND status = 'queued' AND owner IS NOT NULL",
        (utc_now(), time.time(), job_id),
    )


def executor_jobs(*, db: Database, owner: str, executor: str) -> list[JobRow]:
    """The unfinished jobs ``owner`` handed to ``executor`` (placed or running)."""
    rows = db.connection().execute(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND owner = ? AND executor = ? "
        "ORDER BY seq",
        (owner, executor),
    )
    return [_job(row) for row in rows]


def stale_jobs(*, db: Database, owner: str, executor: str, lease_ttl: float) -> list[JobRow]:
    """Running ``executor`` jobs of ``owner`` whose worker has been silent for ``lease_ttl``."""
    rows = db.connection().execute(
        "SELECT * FROM jobs WHERE status = 'running' AND owner = ? AND executor = ? "
        "AND COALESCE(lease_at, 0) < ?",
        (owner, executor, time.time() - lease_ttl),
    )
    return [_job(row) for row in rows]


def adopt_jobs(*, db: Database, plane_id: str, executor: str, lease_ttl: float) -> list[str]:
    """Take over the unfinished ``executor`` jobs of planes that stopped: their workers may
    still run there, and someone must watch them."""
    cutoff = time.time() - lease_ttl
    with db.transaction() as connection:
        rows = connection.execute(
            "UPDATE jobs SET owner = ? WHERE status IN ('queued', 'running') AND executor = ? "
            "AND owner IS NOT NULL AND owner != ? AND NOT EXISTS (SELECT 1 FROM planes p "
            "WHERE p.id = jobs.owner AND p.heartbeat_at >= ?) RETURNING id",
            (plane_id, executor, plane_id, cutoff),
        ).fetchall()
    return [row["id"] for row in rows]


def job_for_token(*, db: Database, job_id: str, token_hash: str) -> JobRow | None:
    """The job when ``token_hash`` is its worker's token.

    The token outlives the run so a worker can retry a terminal event whose answer it
    lost; events after the end are refused by :func:`append_event`.
    """
    return _job_where(db.connection(), "id = ? AND token_hash = ?", (job_id, token_hash))


def touch_lease(*, db: Database, job_id: str) -> bool:
    """Record that the job's worker is alive; return whether a cancel was requested."""
    connection = db.connection()
    connection.execute("UPDATE jobs SET lease_at = ? WHERE id = ?", (time.time(), job_id))
    row = connection.execute(
        "SELECT cancel_requested_at FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return row is not None and row["cancel_requested_at"] is not None


def append_event(
    *, db: Database, job_id: str, data: dict[str, Any], worker_seq: int | None = None
) -> EventAck | None:
    """Store one event (with the next id) and apply its status change; None if the job ended.

    ``worker_seq`` numbers a worker's events so a retried POST whose answer was lost is
    stored once.
    """
    with db.transaction() as connection:
        row = connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = _job(row)
        cancel = job.cancel_requested
        if worker_seq is not None and worker_seq <= row["worker_seq"]:
            return EventAck(row["last_event"], cancel)
        if job.terminal:
            return None
        event_id = _append(connection, job, str(data["type"]), data)
        connection.execute(
            "UPDATE jobs SET lease_at = ?, worker_seq = COALESCE(?, worker_seq) WHERE id = ?",
            (time.time(), worker_seq, job_id),
        )
        (stored,) = connection.execute(
            "SELECT frame FROM events WHERE job_id = ? AND id = ?", (job_id, event_id)
        ).fetchone()
    return EventAck(event_id, cancel, stored)


def append_requested_eval(*, db: Database, job_id: str, data: dict[str, Any]) -> EventAck | None:
    """Store an ``eval.completed`` someone asked for (``arkor eval``), after the job ended.

    Unlike a worker's events it is taken from a finished job: the job's status, its end
    and its worker's numbering stay as they are. None when the job is gone.
    """
    if data.get("type") != "eval.completed":
        raise ValueError(f"only an eval.completed event is stored after a job ends, not {data}")
    with db.transaction() as connection:
        job = _job_where(connection, "id = ?", (job_id,))
        if job is None:
            return None
        event_id = _append(connection, job, "eval.completed", data)
        (stored,) = connection.execute(
            "SELECT frame FROM events WHERE job_id = ? AND id = ?", (job_id, event_id)
        ).fetchone()
    return EventAck(event_id, job.cancel_requested, stored)


def fail_job(*, db: Database, job_id: str, error: str) -> bool:
    """End an unfinished job as failed with ``error``; False when it had already ended."""
    with db.transaction() as connection:
        job = _job_where(connection, "id = ?", (job_id,))
        if job is None or job.terminal:
            return False
        _append(connection, job, "training.failed", _failed(job_id, error))
    return True


def cancel_unfinished(*, db: Database, job_id: str) -> bool:
    """End a job whose worker stopped after a cancel without saying so, as cancelled."""
    with db.transaction() as connection:
        job = _job_where(connection, "id = ?", (job_id,))
        if job is None or job.terminal:
            return False
        _append(connection, job, "training.cancelled", {"type": "training.cancelled"})
    return True


def overdue_cancels(*, db: Database, owner: str, grace: float) -> list[str]:
    """Running jobs of ``owner`` asked to stop more than ``grace`` seconds ago."""
    rows = db.connection().execute(
        "SELECT id FROM jobs WHERE status = 'running' AND owner = ? AND cancel_requested_at < ?",
        (owner, time.time() - grace),
    )
    return [row["id"] for row in rows]


def ended_or_unknown(*, db: Database, job_ids: list[str], ended_before: str) -> list[str]:
    """Of ``job_ids``, those that ended before the timestamp ``ended_before``, or never existed."""
    if not job_ids:
        return []
    connection = db.connection()
    known: dict[str, sqlite3.Row] = {}
    for start in range(0, len(job_ids), 500):  # under SQLite's limit on bound values
        chunk = job_ids[start : start + 500]
        rows = connection.execute(
            f"SELECT id, status, completed_at FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        known.update((row["id"], row) for row in rows)
    return [
        job_id
        for job_id in job_ids
        if (row := known.get(job_id)) is None
        or (
            row["status"] in TERMINAL_JOB_STATUSES
            and (row["completed_at"] is None or row["completed_at"] < ended_before)
        )
    ]


def frames_after(*, db: Database, job_id: str, after: int, limit: int) -> FrameBatch | None:
    """Up to ``limit`` events of ``job_id`` after id ``after`` (``-1``: all), oldest first.

    None when there are none. A replay reads tens of thousands of events, so each costs a
    one-column row and nothing else: the last frame says where the batch ends.
    """
    cursor = db.connection().cursor()
    cursor.row_factory = None
    rows: list[tuple[str]] = cursor.execute(
        "SELECT frame FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
        (job_id, after, limit),
    ).fetchall()
    if not rows:
        return None
    last_id, last_type = frame_head(rows[-1][0])
    return FrameBatch("".join([row[0] for row in rows]), last_id, last_type in TERMINAL_EVENT_TYPES)


def event_data(*, db: Database, job_id: str, event_type: str | None = None) -> list[str]:
    """The JSON of every event of ``job_id`` (of ``event_type`` only, when given), oldest first."""
    if event_type is None:
        rows = db.connection().execute(
            "SELECT frame FROM events WHERE job_id = ? ORDER BY id", (job_id,)
        )
    else:
        rows = db.connection().execute(
            "SELECT frame FROM events WHERE job_id = ? AND type = ? ORDER BY id",
            (job_id, event_type),
        )
    return [frame_data(row[0]) for row in rows]


# --- planes and leases ---------------------------------------------------------------------


def beat_plane(*, db: Database, plane_id: str, pid: int, url: str, started_at: str) -> None:
    """Record that this plane is alive (and forget planes long gone)."""
    now = time.time()
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO planes (id, pid, url, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (plane_id, pid, url, started_at, now),
        )
        connection.execute("DELETE FROM planes WHERE heartbeat_at < ?", (now - 7 * 24 * 3600,))


def remove_plane(*, db: Database, plane_id: str) -> None:
    with db.transaction() as connection:
        connection.execute("DELETE FROM planes WHERE id = ?", (plane_id,))


def release_job(*, db: Database, job_id: str, owner: str) -> bool:
    """Put a running job of ``owner`` whose worker has stopped back in the queue, to resume.

    Its worker's token stops working, and the next worker numbers its events from 1
    again. False when the job is not running under ``owner``.
    """
    with db.transaction() as connection:
        cursor = connection.execute(
            "UPDATE jobs SET status = 'queued', owner = NULL, lease_at = NULL, token_hash = NULL, "
            "worker_seq = 0 WHERE id = ? AND status = 'running' AND owner = ?",
            (job_id, owner),
        )
    return cursor.rowcount > 0


def ran_before(*, db: Database, job_id: str) -> bool:
    """Whether an earlier worker started the job (it was re-queued to resume)."""
    row = (
        db.connection()
        .execute(
            "SELECT 1 FROM events WHERE job_id = ? AND type = 'training.started' LIMIT 1",
            (job_id,),
        )
        .fetchone()
    )
    return row is not None


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_orphans` did: jobs re-queued to resume, failed, or cancelled."""

    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


def recover_orphans(
    *, db: Database, lease_ttl: float, max_resumes: int, reason: Callable[[JobRow, bool], str]
) -> Recovered:
    """Recover running jobs whose owning plane *and* worker have both been silent for ``lease_ttl``.

    One asked to cancel ends cancelled. One with a saved checkpoint and fewer than
    ``max_resumes`` resumes goes back to the queue, to continue from that checkpoint; any
    other fails with ``reason(job, has_checkpoint)``. A job whose owner is a live plane is
    never touched: that plane watches its worker.
    """
    cutoff = time.time() - lease_ttl
    recovered = Recovered()
    with db.transaction() as connection:
        rows = connection.execute(
            "SELECT * FROM jobs j WHERE status = 'running' AND COALESCE(lease_at, 0) < ? "
            "AND NOT EXISTS (SELECT 1 FROM planes p WHERE p.id = j.owner AND p.heartbeat_at >= ?)",
            (cutoff, cutoff),
        ).fetchall()
        for row in rows:
            job = _job(row)
            outcome = _recover(connection, job, max_resumes=max_resumes, reason=reason)
            getattr(recovered, outcome).append(job.id)
    return recovered


def recover_job(
    *, db: Database, job_id: str, max_resumes: int, reason: Callable[[JobRow, bool], str]
) -> Literal["resumed", "failed", "cancelled"] | None:
    """Recover one unfinished job whose worker is gone, by :func:`recover_orphans`' rules.

    None when the job had already ended.
    """
    with db.transaction() as connection:
        job = _job_where(connection, "id = ?", (job_id,))
        if job is None or job.terminal:
            return None
        return _recover(connection, job, max_resumes=max_resumes, reason=reason)


# --- helpers -------------------------------------------------------------------------------


def _recover(
    connection: sqlite3.Connection,
    job: JobRow,
    *,
    max_resumes: int,
    reason: Callable[[JobRow, bool], str],
) -> Literal["resumed", "failed", "cancelled"]:
    """Cancel, re-queue (to resume from its checkpoint) or fail a job whose worker is gone."""
    checkpointed = (
        connection.execute(
            "SELECT 1 FROM events WHERE job_id = ? AND type = 'checkpoint.saved' LIMIT 1",
            (job.id,),
        ).fetchone()
        is not None
    )
    if job.cancel_requested:  # it was asked to stop anyway
        _append(connection, job, "training.cancelled", {"type": "training.cancelled"})
        return "cancelled"
    if checkpointed and job.resumes < max_resumes:
        # a new worker numbers its events from 1 again, under a new token
        connection.execute(
            "UPDATE jobs SET status = 'queued', owner = NULL, lease_at = NULL, "
            "token_hash = NULL, worker_seq = 0, resumes = resumes + 1, executor_job_id = NULL, "
            "queue_reason = NULL WHERE id = ?",
            (job.id,),
        )
        return "resumed"
    _append(connection, job, "training.failed", _failed(job.id, reason(job, checkpointed)))
    return "failed"


def _append(
    connection: sqlite3.Connection, job: JobRow, event_type: str, data: dict[str, Any]
) -> int:
    """Insert the event with the job's next id and move the job to the status it implies."""
    wire = {**data, "type": event_type, "jobId": job.id}
    wire.setdefault("timestamp", utc_now())
    (event_id,) = connection.execute(
        "UPDATE jobs SET last_event = last_event + 1 WHERE id = ? RETURNING last_event", (job.id,)
    ).fetchone()
    data_json = json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
    connection.execute(
        "INSERT INTO events (job_id, id, type, frame) VALUES (?, ?, ?, ?)",
        (job.id, event_id, event_type, frame(event_id, event_type, data_json)),
    )
    status = _STATUS_AFTER.get(event_type)
    if status is not None:
        connection.execute(
            "UPDATE jobs SET status = ?, error = ?, completed_at = ? WHERE id = ?",
            (status, wire.get("error") if status == "failed" else None, utc_now(), job.id),
        )
    elif event_type == "training.started" and job.status == "queued":
        connection.execute(
            "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?",
            (utc_now(), job.id),
        )
    return int(event_id)


def _failed(job_id: str, error: str) -> dict[str, Any]:
    return TrainingFailed(job_id=job_id, error=error).to_wire()


def _job_where(
    connection: sqlite3.Connection, where: str, params: tuple[Any, ...]
) -> JobRow | None:
    row = connection.execute(f"SELECT * FROM jobs WHERE {where}", params).fetchone()
    return _job(row) if row else None


def _job(row: sqlite3.Row) -> JobRow:
    return JobRow(
        id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        name=row["name"],
        status=row["status"],
        config=row["config"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        owner=row["owner"],
        cancel_requested=row["cancel_requested_at"] is not None,
        resumes=row["resumes"],
        executor=row["executor"],
        executor_job_id=row["executor_job_id"],
        node=row["node"],
        queue_reason=row["queue_reason"],
    )
