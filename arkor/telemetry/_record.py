"""Build a command's event, choose where it goes, and hand it with the queue to a sender."""

from __future__ import annotations

import os
import platform
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from arkor._home import arkor_home
from arkor._version import __version__
from arkor.telemetry import truthy
from arkor.telemetry._files import (
    COMMAND_LOCK_WAIT_SECONDS,
    ID_FILENAME,
    Event,
    drain_queue,
    install_id,
    requeue,
)
from arkor.telemetry._send import hand_off

EVENT_NAME = "command"
PLANE_ROUTE = "/v1/telemetry"
"""Where a plane takes PostHog's capture calls (``{plane}/v1/telemetry/batch/``)."""
PLANE_KEY = "arkor-cli"
"""The API key sent to a plane, which takes events without one."""
NOTICE = (
    "arkor records anonymous usage (command, flag names, exit code, duration, versions, OS, "
    "CI) with a random id kept in {path}, for the control plane you use (or "
    "ARKOR_TELEMETRY_HOST); never values, paths or data. Turn it off with DO_NOT_TRACK=1 or "
    "ARKOR_TELEMETRY_DISABLED=1."
)


def record(
    command: str, flags: list[str], exit_code: int, duration_ms: float, plane: str | None
) -> None:
    """Record one command; see :func:`arkor.telemetry.record_command`."""
    debug = truthy("ARKOR_TELEMETRY_DEBUG")

    def log(stage: str, reason: str) -> None:
        if debug:
            print(f"arkor telemetry: {stage} failed: {reason}", file=sys.stderr)

    home = arkor_home()
    try:
        distinct_id, created = install_id(home)
    except OSError as error:
        log("id file", f"{error} (nothing is recorded without an id)")
        return
    if created:
        print(NOTICE.format(path=home / ID_FILENAME), file=sys.stderr)
    event = new_event(distinct_id, command, flags, exit_code, duration_ms)
    destination = _destination(plane, log)
    events = [event]
    try:
        if destination is None:  # nowhere to send: queued here, for the next command
            requeue(home, events, COMMAND_LOCK_WAIT_SECONDS)
            return
        events = [*drain_queue(home, COMMAND_LOCK_WAIT_SECONDS), event]
    except OSError as error:  # a busy lock included: the sender takes this event alone
        log("queue", str(error))
    hand_off(home, destination, events, log)


def new_event(
    distinct_id: str, command: str, flags: list[str], exit_code: int, duration_ms: float
) -> Event:
    """The event of one command: names and numbers only, nothing the user typed as a value."""
    return {
        "event": EVENT_NAME,
        "distinct_id": distinct_id,
        "uuid": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {
            "command": command,
            "flags": sorted(set(flags)),
            "exit_code": exit_code,
            "duration_ms": round(duration_ms),
            "arkor_version": __version__,
            "python_version": platform.python_version(),
            "os": platform.system(),
            "os_release": platform.release(),
            "ci": bool(os.environ.get("CI", "").strip()),
        },
    }


def _destination(plane: str | None, log: Callable[[str, str], None]) -> tuple[str, str] | None:
    """``(host, key)`` of the PostHog API to send to now; None to queue for later."""
    host = os.environ.get("ARKOR_TELEMETRY_HOST", "").strip().rstrip("/")
    key = os.environ.get("ARKOR_TELEMETRY_KEY", "").strip()
    if host and key:
        return host, key
    if host or key:
        log(
            "init",
            "ARKOR_TELEMETRY_HOST and ARKOR_TELEMETRY_KEY work together and only one is set; "
            "set both to send to a PostHog instance (events go to the plane meanwhile)",
        )
    return (plane + PLANE_ROUTE, PLANE_KEY) if plane else None
