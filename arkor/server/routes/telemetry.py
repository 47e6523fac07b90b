"""Usage telemetry from the CLI: a PostHog-compatible capture route and the owner's summary.

The CLI's posthog client is pointed at ``{plane}/v1/telemetry`` and posts PostHog's batch
body (``{api_key, batch: [{event, distinct_id, properties, timestamp, uuid}]}``) to
``/batch/``; ``/capture/`` takes one event. The client sends no bearer token, so the route
takes none: the plane's body cap (``ARKOR_MAX_BODY_BYTES``), :data:`MAX_EVENTS` a request
and a per-address token bucket bound what anyone can send, and only the arkor event
properties in :data:`_KEPT` are stored. Rows older than :data:`RETENTION_DAYS`, and the
oldest beyond :data:`MAX_ROWS`, are deleted as new ones arrive.

``GET /v1/telemetry/summary`` is for the plane's owners (the identity that owns its home,
and the first person signed in through its OpenID provider); anyone else gets 404, as for
anything outside their reach.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from arkor.cloud import WireModel
from arkor.server._db import Database
from arkor.server._errors import SCOPED_ERRORS, error_responses, not_found
from arkor.server._orgs import plane_owner
from arkor.server._ratelimit import limit_per_address
from arkor.server.deps import PrincipalDep, StoreDep

router = APIRouter(prefix="/v1/telemetry", tags=["telemetry"], responses=SCOPED_ERRORS)

MAX_EVENTS = 100
"""The most events one capture request may carry."""
BURST = 30
PER_MINUTE = 120.0
"""Capture requests per client address: this many at once, refilled at this rate."""
RETENTION_DAYS = 90
MAX_ROWS = 100_000
SUMMARY_DAYS = 30
_TEXT = 200
_KEPT: dict[str, type | tuple[type, ...]] = {
    "command": str,
    "flags": list,
    "exit_code": int,
    "duration_ms": (int, float),
    "arkor_version": str,
    "python_version": str,
    "os": str,
    "os_release": str,
    "ci": bool,
}
"""The event properties stored (those the CLI sends); anything else is dropped."""


class CapturedEvent(BaseModel):
    """One event as PostHog's capture API takes it."""

    model_config = ConfigDict(extra="ignore")

    event: str = Field(min_length=1, max_length=_TEXT)
    distinct_id: str | int | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: str | None = Field(default=None, max_length=64)
    uuid: str | None = Field(default=None, max_length=64)


class CaptureBatch(BaseModel):
    """PostHog's ``/batch/`` body."""

    model_config = ConfigDict(extra="ignore")

    api_key: str | None = None
    batch: list[CapturedEvent] = Field(max_length=MAX_EVENTS)


class Captured(BaseModel):
    """PostHog's answer to a capture call."""

    status: int = 1


class Count(WireModel):
    value: str | int | None
    count: int


class TelemetrySummary(WireModel):
    """What this plane's CLI users ran in the last ``days`` days."""

    days: int
    since: str
    events: int
    installs: int
    commands: list[Count]
    exit_codes: list[Count]
    arkor_versions: list[Count]


def _limit(request: Request) -> None:
    """429 with ``Retry-After`` once this client address has spent its bucket.

    A dependency, so it runs before the body is read: a refused body spends the bucket too.
    """
    limit_per_address(
        request,
        "telemetry",
        burst=BURST,
        per_minute=PER_MINUTE,
        refusal="Too many telemetry requests",
    )


_LIMITED = [Depends(_limit)]
_CAPTURE_ERRORS = error_responses(413, 422, 429)


@router.post("/batch/", response_model=Captured, dependencies=_LIMITED, responses=_CAPTURE_ERRORS)
@router.post("/batch", response_model=Captured, dependencies=_LIMITED, include_in_schema=False)
def capture_batch(db: StoreDep, body: CaptureBatch) -> Captured:
    """Store a batch of usage events (PostHog's batch API)."""
    _store(db, body.batch)
    return Captured()


@router.post("/capture/", response_model=Captured, dependencies=_LIMITED, responses=_CAPTURE_ERRORS)
@router.post("/capture", response_model=Captured, dependencies=_LIMITED, include_in_schema=False)
def capture_one(db: StoreDep, body: CapturedEvent) -> Captured:
    """Store one usage event (PostHog's capture API)."""
    _store(db, [body])
    return Captured()


@router.get("/summary", response_model=TelemetrySummary)
def summary(db: StoreDep, principal: PrincipalDep) -> TelemetrySummary:
    """Counts per command, exit code and arkor version over the last 30 days (owner only)."""
    connection = db.connection()
    if principal.user_id not in _owners(db):
        raise not_found("Telemetry summary")
    since = time.time() - SUMMARY_DAYS * 86_400
    window = "FROM telemetry_events WHERE received_ts >= ?"
    events, installs = connection.execute(
        f"SELECT COUNT(*), COUNT(DISTINCT distinct_id) {window}", (since,)
    ).fetchone()

    def counts(column: str) -> list[Count]:
        rows = connection.execute(
            f"SELECT {column} AS value, COUNT(*) AS count {window} GROUP BY {column} "
            "ORDER BY count DESC, value",
            (since,),
        ).fetchall()
        return [Count(value=row["value"], count=row["count"]) for row in rows]

    return TelemetrySummary(
        days=SUMMARY_DAYS,
        since=datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"),
        events=events,
        installs=installs,
        commands=counts("command"),
        exit_codes=counts("exit_code"),
        arkor_versions=counts("arkor_version"),
    )


def _owners(db: Database) -> set[str]:
    """Who owns this plane: the identity that owns its home (signed in with the home key),
    and on a plane with an OpenID provider, the first person who signed in through it."""
    row = db.connection().execute("SELECT value FROM meta WHERE key = 'owner_user_id'").fetchone()
    owners = {str(row["value"])} if row else set()
    person = plane_owner(db=db)
    return owners | {person} if person is not None else owners


def _store(db: Database, events: list[CapturedEvent]) -> None:
    """Insert the events (a uuid already stored is a resend, skipped); prune old rows."""
    now = time.time()
    rows = []
    for event in events:
        kept = _kept(event.properties)
        distinct_id = event.distinct_id
        if distinct_id is None:  # older PostHog clients send it among the properties
            distinct_id = event.properties.get("distinct_id")
        rows.append(
            (
                _uuid(event.uuid),
                now,
                event.event,
                str(distinct_id if distinct_id is not None else "")[:_TEXT],
                kept.get("command"),
                kept.get("exit_code"),
                kept.get("arkor_version"),
                json.dumps(kept, sort_keys=True),
            )
        )
    with db.transaction() as connection:
        connection.executemany(
            "INSERT OR IGNORE INTO telemetry_events (uuid, received_ts, event, distinct_id, "
            "command, exit_code, arkor_version, properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute(
            "DELETE FROM telemetry_events WHERE received_ts < ?", (now - RETENTION_DAYS * 86_400,)
        )
        connection.execute(
            "DELETE FROM telemetry_events WHERE seq <= (SELECT MAX(seq) FROM telemetry_events) - ?",
            (MAX_ROWS,),
        )


def _kept(properties: dict[str, Any]) -> dict[str, Any]:
    """The arkor properties of an event, of the expected types and bounded in size."""
    kept: dict[str, Any] = {}
    for name, kind in _KEPT.items():
        value = properties.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            continue
        if isinstance(value, str):
            value = value[:_TEXT]
        elif isinstance(value, list):
            value = [flag[:_TEXT] for flag in value[:50] if isinstance(flag, str)]
        elif isinstance(value, float) and not math.isfinite(value):
            continue
        elif isinstance(value, int) and not isinstance(value, bool):
            value = max(min(value, 2**62), -(2**62))
        kept[name] = value
    return kept


def _uuid(text: str | None) -> str:
    """The event's uuid, or a new one when it sent none that parses."""
    try:
        return str(uuid.UUID(text)) if text else str(uuid.uuid4())
    except ValueError:
        return str(uuid.uuid4())
