"""The plane's SQLite database: one connection per live thread, WAL, a busy timeout.

A thread keeps its connection while it lives; when it ends (anyio's pool retires idle
threads) the connection goes back to a small idle pool for the next thread, or is closed,
so open handles follow the number of live threads, not the number that ever ran.

WAL lets event streams read while a worker's events are written, and lets two planes
(``arkor serve`` and an embedded ``arkor start``) share one file. Connections run in
autocommit mode; :meth:`Database.transaction` takes the write lock up front
(``BEGIN IMMEDIATE``) so read-then-write steps never deadlock on an upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from arkor._home import private_dir
from arkor.errors import ArkorError

_T = TypeVar("_T")
_BUSY_TIMEOUT_MS = 15_000
_IDLE_CONNECTIONS = 4
"""Connections of finished threads kept open for the next ones; the rest are closed."""
_SCHEMA_VERSION = 7
_DEPLOYMENT_TABLES = """
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    slug TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    run_retention_mode TEXT NOT NULL,
    run_retention_days INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_project ON deployments (project_id, created_at);
CREATE TABLE IF NOT EXISTS deployment_keys (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    label TEXT,
    enabled INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX IF NOT EXISTS deployment_keys_by_deployment ON deployment_keys (deployment_id);
CREATE TABLE IF NOT EXISTS deployment_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    created_ts REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployment_runs_by_deployment ON deployment_runs (deployment_id, seq);
CREATE INDEX IF NOT EXISTS deployment_runs_by_age ON deployment_runs (created_ts);
"""
_IDENTITY_TABLES = """
CREATE TABLE IF NOT EXISTS oidc_users (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    UNIQUE (issuer, subject)
);
CREATE INDEX IF NOT EXISTS oidc_users_by_email ON oidc_users (email);
CREATE TABLE IF NOT EXISTS group_orgs (
    org_id TEXT PRIMARY KEY REFERENCES orgs (id),
    group_name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS group_members (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id),
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS invitations (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL,
    invited_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, email)
);
CREATE INDEX IF NOT EXISTS invitations_by_email ON invitations (email);
"""
"""People signed in through an OpenID provider, keyed by (issuer, subject) with the email
and name their claims carry; orgs that mirror a provider group and the memberships that
group gives; invitations by email."""
_TELEMETRY_TABLES = """
CREATE TABLE IF NOT EXISTS telemetry_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    received_ts REAL NOT NULL,
    event TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    command TEXT,
    exit_code INTEGER,
    arkor_version TEXT,
    properties TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_events_by_age ON telemetry_events (received_ts);
"""
"""Usage events the CLI sent this plane (PostHog's capture format), for its owner's summary."""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    anonymous_id TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orgs (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('plane_id', 'plane_' || lower(hex(randomblob(16))));
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (org_id, slug)
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, sha256)
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    created_by TEXT NOT NULL,
    owner TEXT,
    lease_at REAL,
    cancel_requested_at REAL,
    token_hash TEXT,
    worker_seq INTEGER NOT NULL DEFAULT 0,
    last_event INTEGER NOT NULL DEFAULT 0,
    resumes INTEGER NOT NULL DEFAULT 0,
    executor TEXT,
    executor_job_id TEXT,
    node TEXT,
    queue_reason TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs (project_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    type TEXT NOT NULL,
    frame TEXT NOT NULL,
    PRIMARY KEY (job_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE TABLE IF NOT EXISTS planes (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    url TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""
    + _DEPLOYMENT_TABLES
    + _IDENTITY_TABLES
    + _TELEMETRY_TABLES
)
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 → 2: an event is stored as the SSE frame it is streamed as, not as its JSON; a job
    # counts the times it was resumed after its plane died
    1: (
        "ALTER TABLE jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE events_v2 (job_id TEXT NOT NULL, id INTEGER NOT NULL, type TEXT NOT NULL, "
        "frame TEXT NOT NULL, PRIMARY KEY (job_id, id)) WITHOUT ROWID",
        "INSERT INTO events_v2 SELECT job_id, id, type, 'id: ' || id || char(10) || 'event: ' "
        "|| type || char(10) || 'data: ' || data || char(10) || char(10) FROM events",
        "DROP TABLE events",
        "ALTER TABLE events_v2 RENAME TO events",
    ),
    # 2 → 3: the plane's stable identity (DESIGN.md decision 11) in a key-value table, and a
    # public id per token so its owner can list and revoke it
    2: (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT OR IGNORE INTO meta (key, value) "
        "VALUES ('plane_id', 'plane_' || lower(hex(randomblob(16))))",
        "CREATE TABLE tokens_v3 (hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES "
        "users (id), created_at TEXT NOT NULL, id TEXT)",
        "INSERT INTO tokens_v3 (hash, user_id, created_at, id) SELECT hash, user_id, "
        "created_at, 'tok_' || lower(hex(randomblob(10))) FROM tokens",
        "DROP TABLE tokens",
        "ALTER TABLE tokens_v3 RENAME TO tokens",
        "CREATE UNIQUE INDEX tokens_by_id ON tokens (id)",
    ),
    # 3 → 4: deployments, their API keys (hashed) and the requests they answered
    3: tuple(statement for statement in _DEPLOYMENT_TABLES.split(";") if statement.strip()),
    # 4 → 5: people from an OpenID provider, group orgs and their members, invitations
    4: tuple(statement for statement in _IDENTITY_TABLES.split(";") if statement.strip()),
    # 5 → 6: usage events sent by the CLI (arkor.telemetry)
    5: tuple(statement for statement in _TELEMETRY_TABLES.split(";") if statement.strip()),
    # 6 → 7: where a job's worker runs (executor, its job id there, node) and why it waits
    6: (
        "ALTER TABLE jobs ADD COLUMN executor TEXT",
        "ALTER TABLE jobs ADD COLUMN executor_job_id TEXT",
        "ALTER TABLE jobs ADD COLUMN node TEXT",
        "ALTER TABLE jobs ADD COLUMN queue_reason TEXT",
    ),
}
"""The statements that bring a database of version N to N + 1."""


class DatabaseVersionError(ArkorError):
    """The database was written by a newer Arkor, whose schema this one doesn't know."""


class _Lease:
    """A thread's hold on one connection, kept in thread-local storage.

    It is dropped when its thread ends, and its finalizer hands the connection back.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


class Database:
    """A SQLite file shared by the plane's threads, each using its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._open: set[sqlite3.Connection] = set()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._lock = threading.Lock()
        private_dir(path.parent)
        _create_private(path)
        try:
            self._create_or_migrate()
        except BaseException:
            self.close()
            raise

    def connection(self) -> sqlite3.Connection:
        """This thread's connection: taken from the idle pool, or opened, on first use."""
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None:
            lease = _Lease(self._checkout())
            weakref.finalize(lease, self._checkin, lease.connection)
            self._local.lease = lease
        return lease.connection

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"The database {self.path} is closed.")
            if self._idle:
                return self._idle.pop()
        # autocommit; used by one thread at a time, handed over only after that thread ended
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            self._open.add(connection)
        return connection

    def _checkin(self, connection: sqlite3.Connection) -> None:
        """Take back the connection of a thread that ended: keep it idle, or close it."""
        with self._lock:
            keep = not self._closed and len(self._idle) < _IDLE_CONNECTIONS
            if keep:
                self._idle.append(connection)
            else:
                self._open.discard(connection)
        if not keep:
            connection.close()

    def open_connections(self) -> int:
        """How many connections are open now (those of live threads plus the idle pool)."""
        with self._lock:
            return len(self._open)

    def _create_or_migrate(self) -> None:
        """Create the tables of a new file, or bring an older one up to this version.

        One transaction: two planes opening the same file at once can't interleave.
        """
        with self.transaction() as connection:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise DatabaseVersionError(
                    f"The database {self.path} was written by a newer version of Arkor "
                    f"(schema {version}; this one knows up to {_SCHEMA_VERSION}). Upgrade "
                    "arkor (`pip install -U arkor`), or point ARKOR_HOME at another folder."
                )
            if version == 0:
                statements = [s for s in _SCHEMA.split(";") if s.strip()]
            else:
                statements = [s for v in range(version, _SCHEMA_VERSION) for s in _MIGRATIONS[v]]
            for statement in statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        """Close every connection; the database must not be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._open, self._idle = self._open, set(), []
        for connection in connections:
            connection.close()


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it.

    SQLite gives the ``-wal`` and ``-shm`` files the main file's permissions.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


async def in_thread(function: Callable[..., _T], /, **kwargs: object) -> _T:
    """Run a blocking store call from async code without stalling the event loop."""
    return await anyio.to_thread.run_sync(partial(function, **kwargs))
