"""The database file: created at the current schema, older ones migrated, newer ones refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from arkor.server import _store as store
from arkor.server._db import _SCHEMA, _SCHEMA_VERSION, Database, DatabaseVersionError


def version_1_schema() -> str:
    """The first schema: events kept their JSON (not their frame); jobs had no resume count."""
    v1 = _SCHEMA.replace("    frame TEXT NOT NULL,", "    data TEXT NOT NULL,").replace(
        ",\n    resumes INTEGER NOT NULL DEFAULT 0", ""
    )
    assert v1.count("data TEXT NOT NULL") == 1 and "resumes" not in v1
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
    assert columns[-1] == "resumes"
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
