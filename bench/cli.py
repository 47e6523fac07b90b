"""Time whole ``arkor`` processes against ``python -c pass`` in the same run.

    python bench/cli.py [--runs 21]

Prints the median wall time of each command, its ratio to the bare interpreter, and the
target it must meet on a 2-core machine: ``--version`` and help ≤ 100 ms, ``build`` ≤ 200 ms.

Then what usage telemetry costs a command's exit: ``arkor build`` with telemetry off, sent
to a PostHog host on loopback that answers, and to one that never answers. The command
only starts a detached sender and hands it the events, so all three should be within a
few ms of each other; the senders' own time (a Python start, posthog's import, the
request) is spent after the command has returned.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TARGETS_MS = {
    "arkor --version": 100.0,
    "arkor --help": 100.0,
    "arkor build --help": 100.0,
    "arkor build": 200.0,
}


def arkor_command() -> list[str]:
    """The console script next to this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "arkor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "arkor"]


def time_runs(
    command: list[str],
    cwd: Path,
    runs: int,
    extra_env: dict[str, str] | None = None,
    *,
    warm: bool = True,
) -> list[float]:
    env = {**os.environ, "CI": "1", "NO_COLOR": "1", **(extra_env or {})}
    if warm:  # a first run fills the page cache
        subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


class _Answering(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def answering_host() -> Iterator[str]:
    """A PostHog stand-in on loopback that takes every batch at once."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def hanging_host() -> Iterator[str]:
    """A loopback port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


SENDER_TIMEOUT_SECONDS = 1.0
"""The senders' deadline here, so those left waiting on the hanging host end soon."""
SETTLE_SECONDS = 0.6
"""The pause after each timed run: a sender (a Python start and posthog's import, ~0.3 s of
CPU at the lowest priority) is done before the next run is timed, instead of sharing a
small machine's CPUs with it."""


def telemetry_exit(arkor: list[str], workdir: Path, runs: int) -> dict[str, float]:
    """Median ``arkor build`` time with telemetry off, to an answering and a hanging host.

    The three are run in turn, run after run, so a machine that slows down or speeds up
    during the bench weighs on each alike; each run is followed by :data:`SETTLE_SECONDS`.
    """
    os.environ["ARKOR_TELEMETRY_TIMEOUT"] = str(SENDER_TIMEOUT_SECONDS)
    with answering_host() as answering, hanging_host() as hanging:
        cases = {
            "telemetry off": {"ARKOR_TELEMETRY_DISABLED": "1"},
            "answering host": {"ARKOR_TELEMETRY_HOST": answering, "ARKOR_TELEMETRY_KEY": "k"},
            "hanging host": {"ARKOR_TELEMETRY_HOST": hanging, "ARKOR_TELEMETRY_KEY": "k"},
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, extra in cases.items():
                samples[name].extend(time_runs([*arkor, "build"], workdir, 1, extra, warm=False))
                time.sleep(SETTLE_SECONDS)
        time.sleep(SENDER_TIMEOUT_SECONDS + 1)  # the last senders give up and queue their events
    return {f"build, {name}": statistics.median(taken) for name, taken in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (default 21)")
    args = parser.parse_args()
    arkor = arkor_command()
    workdir = Path(tempfile.mkdtemp(prefix="arkor-bench-"))
    os.environ["ARKOR_HOME"] = str(workdir / ".arkor-home")  # this user's home stays untouched
    try:
        subprocess.run(
            [*arkor, "init", "--yes", "--skip-git"], cwd=workdir, capture_output=True, check=True
        )
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "arkor --version": [*arkor, "--version"],
            "arkor --help": [*arkor, "--help"],
            "arkor build --help": [*arkor, "build", "--help"],
            "arkor validate": [*arkor, "validate"],
            "arkor build": [*arkor, "build"],
        }
        medians = {
            name: statistics.median(time_runs(cmd, workdir, args.runs))
            for name, cmd in cases.items()
        }
        telemetry = telemetry_exit(arkor, workdir, args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    baseline = medians["python -c pass"]
    print(f"{'command':<20}{'median ms':>11}{'× python':>10}{'target ms':>11}  result")
    failed = False
    for name, median in medians.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else ("ok" if median <= target else "OVER")
        failed |= verdict == "OVER"
        target_text = f"{target:.0f}" if target else "-"
        print(f"{name:<20}{median:>11.1f}{median / baseline:>10.2f}{target_text:>11}  {verdict}")
    off = telemetry["build, telemetry off"]
    print(f"\n{'telemetry at exit':<28}{'median ms':>11}{'× off':>8}{'+ms':>8}")
    for name, median in telemetry.items():
        print(f"{name:<28}{median:>11.1f}{median / off:>8.2f}{median - off:>+8.1f}")
    stalled = telemetry["build, hanging host"] - telemetry["build, answering host"]
    print(f"a hanging host costs {stalled:+.1f} ms over an answering one (goal: a few ms)")
    print(f"({args.runs} runs each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
