"""Send events with the posthog client's batch call, in a daemon thread the exit waits for briefly.

A dead or hanging endpoint costs the exit at most the deadline: the thread is left
behind (a daemon dies with the process) and whatever it had not sent stays queued.

The batch call (``posthog.request.batch_post``, what the client's own consumer posts
with) rather than ``Client.capture``: one request for a whole backlog, its failure raised
rather than logged, and no per-process probe of the OS distribution (``capture`` runs
``lsb_release``, ~30 ms) or extra properties the event does not need.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from arkor.telemetry._files import Event

SEND_TIMEOUT_SECONDS = 2.0
"""One request's timeout; only a thread already left behind by the exit ever waits this long."""
BATCH_SIZE = 100
"""Events per request (what a plane's capture route takes at most)."""

Log = Callable[[str, str], None]
"""Report one failure of a stage (``init``, ``capture``, ``shutdown``) with its reason."""


def deliver(host: str, key: str, events: list[Event], *, deadline: float, log: Log) -> set[str]:
    """Send ``events`` in order to the PostHog API at ``host``; the uuids sent in time.

    Stops at the first request that fails, so an endpoint that refuses costs one request.
    """
    try:
        from posthog.request import batch_post
    except Exception as error:  # a broken install must not break the command
        log("init", f"cannot import posthog ({error})")
        return set()
    sent: list[str] = []
    problems: list[str] = []

    def send() -> None:
        for start in range(0, len(events), BATCH_SIZE):
            batch = events[start : start + BATCH_SIZE]
            try:
                batch_post(key, host, timeout=SEND_TIMEOUT_SECONDS, batch=batch)
            except Exception as error:
                problems.append(f"{type(error).__name__}: {error}".splitlines()[0])
                return
            sent.extend(str(event["uuid"]) for event in batch)

    thread = threading.Thread(target=send, name="arkor-telemetry", daemon=True)
    thread.start()
    thread.join(deadline)
    done = set(sent)
    for problem in list(problems):
        log("capture", f"{problem} (sending to {host}; the events stay queued)")
    if thread.is_alive():
        log(
            "shutdown",
            f"gave up waiting for {host} after {deadline * 1000:.0f} ms; "
            f"{len(events) - len(done)} event(s) stay queued for the next command",
        )
    return done
