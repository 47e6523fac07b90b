"""Anonymous usage telemetry: one event per CLI command, never in the way of the command.

What an event holds: the command ("jobs list"), the names of the flags used (never their
values), the exit code, the duration, the arkor / Python / OS versions, whether ``CI`` is
set, and a random install id kept in ``$ARKOR_HOME/telemetry-id``. Never config values,
paths, model names, data or secrets.

Where it goes: with ``ARKOR_TELEMETRY_HOST`` and ``ARKOR_TELEMETRY_KEY`` set, to that
PostHog instance; otherwise to the control plane the command talked to (its
PostHog-compatible route ``/v1/telemetry``), so usage stays with whoever runs the plane.
A command that talked to no plane queues its event in ``$ARKOR_HOME/telemetry-queue.jsonl``
for the next command that does. At exit the command hands its event and the queue to a
detached sender process (:mod:`arkor.telemetry._send`) and returns without waiting: the
sender puts back in the queue what the endpoint did not take within
``ARKOR_TELEMETRY_TIMEOUT`` seconds (default 5).

``DO_NOT_TRACK`` or ``ARKOR_TELEMETRY_DISABLED`` (1/true/yes) turns it off: nothing is
recorded or sent, and the id file is neither created nor read. ``ARKOR_TELEMETRY_DEBUG``
prints this module's own failures to stderr, one line each.

This module imports nothing heavy, so importing it costs nothing on the CLI's fast paths;
the work happens in :mod:`arkor.telemetry._record` when a command has finished.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

OPT_OUT_VARIABLES = ("DO_NOT_TRACK", "ARKOR_TELEMETRY_DISABLED")

_noted_plane: str | None = None


def truthy(name: str) -> bool:
    """Whether the environment variable ``name`` says yes (1, true, yes or on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def disabled() -> bool:
    """Whether the user opted out (``DO_NOT_TRACK`` or ``ARKOR_TELEMETRY_DISABLED``)."""
    return any(truthy(name) for name in OPT_OUT_VARIABLES)


def note_plane(url: str) -> None:
    """Remember the control plane this process talks to: its commands' events go there."""
    global _noted_plane
    _noted_plane = url.rstrip("/")


def noted_plane() -> str | None:
    """The plane noted by :func:`note_plane` in this process, if any."""
    return _noted_plane


def record_command(
    command: str, flags: Sequence[str], *, exit_code: int, duration_ms: float
) -> None:
    """Record one finished command and hand what is pending to a sender that runs on alone.

    Never raises and never fails the command: its own failures are shown only with
    ``ARKOR_TELEMETRY_DEBUG``.
    """
    global _noted_plane
    if disabled():
        return
    plane, _noted_plane = _noted_plane, None
    try:
        from arkor.telemetry._record import record

        record(command, list(flags), exit_code, duration_ms, plane)
    except (Exception, KeyboardInterrupt) as error:  # telemetry never costs the user a command
        if truthy("ARKOR_TELEMETRY_DEBUG"):
            import sys

            print(f"arkor telemetry: recording failed: {error!r}", file=sys.stderr)


__all__ = ["disabled", "note_plane", "noted_plane", "record_command", "truthy"]
