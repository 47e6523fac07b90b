"""The plane's SQLite database: one connection per thread, WAL, a busy timeout.

WAL lets event streams read while a worker's events are written, and lets two planes
(``arkor serve`` and an embedded ``arkor start``) share one file. Connections run in
autocommit mode; :meth:`Database.transaction` takes the write lock up front
(``BEGIN IMMEDIATE``) so read-then-write steps never deadlock on an upgrade.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from arkor.errors import ArkorError

_T = TypeVar("_T")
_BUSY_TIMEOUT_MS = 15_000
_SCHEMA_VERSION = 2
_SCHEMA = """
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
    created_at TEXT NOT NULL
);
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
    resumes INTEGER NOT NULL DEFAULT 0
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
}
"""The statements that bring a database of version N to N + 1."""


class DatabaseVersionError(ArkorError):
    """The database was written by a newer Arkor, whose schema this one doesn't know."""


class Database:
    """A SQLite file shared by the plane's threads, each with its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._create_or_migrate()
        except BaseException:
            self.close()
            raise

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # autocommit; shared across threads only to be closed by close()
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

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
        """Close every thread's connection; the database must not be used afterwards."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


async def in_thread(function: Callable[..., _T], /, **kwargs: object) -> _T:
    """Run a blocking store call from async code without stalling the event loop."""
    return await anyio.to_thread.run_sync(partial(function, **kwargs))
