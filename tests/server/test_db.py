"""The database file: created at the current schema, older ones migrated, newer ones refused;
owner-only, and with as many open handles as there are live threads, not finished ones."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import psutil
import pytest

from arkor.server import _store as store
from arkor.server._db import (
    _IDLE_CONNECTIONS,
    _SCHEMA,
    _SCHEMA_VERSION,
    Database,
    DatabaseVersionError,
)


def version_1_schema() -> str:
    """The first schema: events kept their JSON (not their frame); jobs had no resume count."""
    v1 = _SCHEMA.replace("    frame TEXT NOT NULL,", "    data TEXT NOT NULL,").replace(
        ",\n    resumes INTEGER NOT NULL DEFAULT 0,\n    executor TEXT,\n    executor_job_id TEXT,"
        "\n    node TEXT,\n    queue_reason TEXT",
        "",
    )
    assert v1.count("data TEXT NOT NULL") == 1 and "resumes" not in v1 and "node" not in v1
    return v1


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_a_new_file_gets_the_current_schema(tmp_path: Path) -> None:
    Database(tmp_path / "arkor.db").close()
    assert user_version(tmp_path / "arkor.db") == _SCHEMA_VERSION
    Database(tmp_path / "arkor.db").close()  # reopening changes nothing
    assert user_version(tmp_path / "arkor.db") == _SCHEMA_VERSION


def test_version_1_events_become_frames_and_stream_as_before(tmp_path: Path) -> None:
    """A database of the first schema keeps its events, which stream as they did then."""
    path = tmp_path / "arkor.db"
    events = [
        (1, "training.started", json.dumps({"type": "training.started", "jobId": "j"})),
        (2, "training.log", json.dumps({"type": "training.log", "jobId": "j", "step": 1})),
        (3, "training.completed", json.dumps({"type": "training.completed", "jobId": "j"})),
    ]
    with sqlite3.connect(path) as connection:
        connection.executescript(version_1_schema())
        connection.executemany(
            "INSERT INTO events VALUES ('j', ?, ?, ?)", [(i, t, d) for i, t, d in events]
        )
        connection.execute("PRAGMA user_version = 1")
    connection.close()

    db = Database(path)
    try:
        batch = store.frames_after(db=db, job_id="j", after=1, limit=-1)
        assert store.event_data(db=db, job_id="j") == [data for _, _, data in events]
        columns = [row[1] for row in db.connection().execute("PRAGMA table_info(jobs)")]
    finally:
        db.close()
    assert columns[-5:] == ["resumes", "executor", "executor_job_id", "node", "queue_reason"]
    assert batch is not None
    assert batch.text == "".join(f"id: {i}\nevent: {t}\ndata: {d}\n\n" for i, t, d in events[1:])
    assert (batch.last_id, batch.terminal) == (3, True)
    assert user_version(path) == _SCHEMA_VERSION


def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "arkor.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE future (x)")
        connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(DatabaseVersionError, match="newer version of Arkor") as caught:
        Database(path)
    assert str(path) in str(caught.value) and "ARKOR_HOME" in str(caught.value)
    assert user_version(path) == _SCHEMA_VERSION + 1


def test_no_events_is_none(tmp_path: Path) -> None:
    db = Database(tmp_path / "arkor.db")
    try:
        assert store.frames_after(db=db, job_id="nobody", after=0, limit=-1) is None
    finally:
        db.close()


def handles_on(path: Path) -> int:
    """Open file descriptors of this process on ``path`` (the database file itself)."""
    return sum(1 for f in psutil.Process().open_files() if Path(f.path) == path)


def test_finished_threads_leave_no_connections_behind(tmp_path: Path) -> None:
    """Rounds of short-lived threads, as anyio's pool retires and starts them: bounded handles.

    A connection closed while another one of the process holds a lock on the file can't close
    its descriptor (that would drop the other's lock), so SQLite parks it and reuses it for the
    next connection it opens: at most one round's threads' worth stays parked. A connection
    leaked per thread would leave ``rounds * per_round`` handles.
    """
    path = tmp_path / "arkor.db"
    db = Database(path)
    rounds, per_round = 10, 20

    def read() -> None:
        assert store.get_job(db=db, job_id="none") is None

    try:
        for _ in range(rounds):
            threads = [threading.Thread(target=read) for _ in range(per_round)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert db.open_connections() <= _IDLE_CONNECTIONS + 1  # the idle pool + this thread
        busy = handles_on(path)
        assert busy <= _IDLE_CONNECTIONS + 1 + per_round, f"{busy} handles on the database"
    finally:
        db.close()
    assert handles_on(path) == 0 and db.open_connections() == 0


def test_the_database_is_owner_only_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        db = Database(tmp_path / "arkor.db")
        try:
            store.get_job(db=db, job_id="none")
            files = [tmp_path / name for name in ("arkor.db", "arkor.db-wal", "arkor.db-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        finally:
            db.close()
    finally:
        os.umask(previous)
    assert modes == dict.fromkeys(modes, 0o600)
