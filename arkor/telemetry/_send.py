"""Send events from a detached child process, so a command's exit never waits on a network.

The command (:func:`hand_off`) starts ``python -m arkor.telemetry._send`` in a session of
its own, writes one JSON payload to its stdin (where to send, the events, the home) and
returns without waiting. The child (:func:`main`) imports posthog, sends, and puts back
in the queue whatever was not taken within ``ARKOR_TELEMETRY_TIMEOUT`` seconds (default
:data:`DEFAULT_TIMEOUT_SECONDS`). An alarm a little later ends it whatever it is doing,
so no sender outlives its deadline by more than :data:`GRACE_SECONDS`. It prints nothing:
its output goes to /dev/null, or to the command's stderr with ``ARKOR_TELEMETRY_DEBUG``.

The batch call (``posthog.request.batch_post``, what the client's own consumer posts
with) rather than ``Client.capture``: one request for a whole backlog, its failure raised
rather than logged, and no probe of the OS distribution (``capture`` runs
``lsb_release``) or extra properties the event does not need.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import arkor
from arkor.telemetry import truthy
from arkor.telemetry._files import COMMAND_LOCK_WAIT_SECONDS, Event, requeue

TIMEOUT_VARIABLE = "ARKOR_TELEMETRY_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long a sender tries before it puts the events back for the next command."""
GRACE_SECONDS = 5
"""How long past its timeout a sender may take to put the events back before the alarm."""
NICENESS = 19
"""The sender runs at the lowest priority, so a command that starts meanwhile runs first."""
BATCH_SIZE = 100
"""Events per request (what a plane's capture route takes at most)."""

Log = Callable[[str, str], None]
"""Report one failure of a stage (``init``, ``queue``, ``capture``, ``shutdown``)."""

_children: list[subprocess.Popen[bytes]] = []
"""The senders this process started: kept so none is collected while it runs (a running
``Popen`` warns when collected); the ones that finished are reaped at the next start."""


def hand_off(
    home: Path, destination: tuple[str, str] | None, events: list[Event], log: Log
) -> None:
    """Give ``events`` to a new sender for ``destination`` (None: it only queues them).

    Returns once the payload is written, without waiting for the sender; if the sender
    cannot be started, the events go back in the queue here.
    """
    host, key = destination if destination is not None else (None, None)
    payload = {"home": str(home.absolute()), "host": host, "key": key, "events": events}
    package_root = str(Path(arkor.__file__).parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    _children[:] = [child for child in _children if child.poll() is None]
    try:
        child = subprocess.Popen(
            # -P: the command's folder is not put on the sender's import path
            [sys.executable, "-P", "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=None if truthy("ARKOR_TELEMETRY_DEBUG") else subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        log("init", f"cannot start the sender ({error}); the events stay queued")
        requeue(home, events, COMMAND_LOCK_WAIT_SECONDS)
        return
    _children.append(child)
    assert child.stdin is not None
    try:
        with child.stdin:
            child.stdin.write(json.dumps(payload).encode())
    except OSError as error:  # the sender died before reading: it sent nothing
        log("init", f"the sender did not take the events ({error}); they stay queued")
        requeue(home, events, COMMAND_LOCK_WAIT_SECONDS)


def timeout_seconds(log: Log) -> float:
    """The sender's deadline: ``ARKOR_TELEMETRY_TIMEOUT`` seconds, else the default."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    log(
        "init",
        f"{TIMEOUT_VARIABLE}={text!r} is not a positive number of seconds; "
        f"using {DEFAULT_TIMEOUT_SECONDS:g}",
    )
    return DEFAULT_TIMEOUT_SECONDS


def send(host: str, key: str, events: list[Event], *, deadline: float, log: Log) -> set[str]:
    """Send ``events`` in order to the PostHog API at ``host``; the uuids taken in time.

    Stops at the first request that fails, so an endpoint that refuses costs one request.
    """
    try:
        from posthog.request import batch_post
    except Exception as error:  # a broken install sends nothing; the events stay queued
        log("init", f"cannot import posthog ({error})")
        return set()
    sent: list[str] = []
    problems: list[str] = []

    def post_batches() -> None:
        for start in range(0, len(events), BATCH_SIZE):
            batch = events[start : start + BATCH_SIZE]
            try:
                batch_post(key, host, timeout=deadline, batch=batch)
            except Exception as error:
                problems.append(f"{type(error).__name__}: {error}".splitlines()[0])
                return
            sent.extend(str(event["uuid"]) for event in batch)

    thread = threading.Thread(target=post_batches, name="arkor-telemetry", daemon=True)
    thread.start()
    thread.join(deadline)
    done = set(sent)
    for problem in list(problems):
        log("capture", f"{problem} (sending to {host}; the events stay queued)")
    if thread.is_alive():
        log(
            "shutdown",
            f"gave up waiting for {host} after {deadline:g} s; "
            f"{len(events) - len(done)} event(s) stay queued for the next command",
        )
    return done


def main() -> int:
    """The sender: read the payload on stdin, send it, put back what was not taken."""
    debug = truthy("ARKOR_TELEMETRY_DEBUG")

    def log(stage: str, reason: str) -> None:
        if debug:
            print(f"arkor telemetry: {stage} failed: {reason}", file=sys.stderr, flush=True)

    deadline = timeout_seconds(log)
    signal.alarm(math.ceil(deadline) + GRACE_SECONDS)  # SIGALRM's default action ends it
    try:
        payload = json.loads(sys.stdin.buffer.read())
        home = Path(payload["home"])
        events: list[Event] = list(payload["events"])
        host, key = payload["host"], payload["key"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        log("init", f"unreadable payload ({error!r}); nothing sent")
        return 1
    os.nice(NICENESS)  # posthog's import and the request yield the CPU to commands
    sent = send(host, key, events, deadline=deadline, log=log) if host and key else set()
    unsent = [event for event in events if event["uuid"] not in sent]
    if unsent:
        try:
            requeue(home, unsent)
        except OSError as error:
            log("queue", f"{error} ({len(unsent)} event(s) lost)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
