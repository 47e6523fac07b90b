"""Event delivery, plane → client → callback, against a hand-written SSE pair in the same run.

    python bench/events.py [--events 20000] [--rate 300] [--live-seconds 10] [--repeats 3]

A real plane (``run_in_thread``, temporary ``ARKOR_HOME``) runs ``bench/_emitter.py`` as
its job worker: the real worker protocol (claim, heartbeat, one ``POST`` per event with
``X-Event-Seq``, ``training.completed`` last), posting ``training.log`` events that carry
their emit time. The client is what a user runs: ``Trainer.wait()`` (``follow_event_batches``
on the waiting thread, then the ``Dispatcher``) calling an ``on_log`` callback that records
the step and the time it was called. As in the SDK's embedded mode (no ``arkor serve``
running), plane and client share this process; the baseline server does too.

- ingest: the emitter posts ``--events`` events as fast as the plane takes them;
- replay: ``Trainer.wait()`` follows that finished job; events/s from the first to the
  last callback. Baseline: the same frames (ids, names, JSON data) hand-formatted by a
  minimal asyncio server and read by a minimal httpx client (``iter_lines``, one
  ``json.loads`` per frame, the same recording callback). Target: Arkor/raw ≥ 0.8.
  Two more clients on the same plane split the cost: the raw client (what the plane
  itself costs) and ``follow_events`` + ``Dispatcher`` (what the SDK's parsing,
  validation and dispatch cost, without ``Trainer``'s bookkeeping); and, after those,
  ``Trainer.wait`` through ``arkor serve`` (the plane in its own process, over the same
  database);
- live: the emitter posts at ``--rate`` per second for ``--live-seconds`` while
  ``Trainer.wait()`` follows; emit → callback latency p50/p99. Target: p99 ≤ 50 ms;
- idle RSS: ``python -m arkor serve`` in a subprocess with an empty home, once it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arkor._version import __version__  # noqa: E402
from arkor.cloud import (  # noqa: E402
    CloudApiClient,
    HuggingfaceDatasetSource,
    JobConfig,
    TrainingJob,
    ensure_project,
    follow_events,
    request_anonymous_token,
)
from arkor.sdk import Session, Trainer, TrainingResult  # noqa: E402
from arkor.sdk._dispatch import Dispatcher  # noqa: E402
from arkor.server import load_settings, run_in_thread  # noqa: E402

EMITTER = (sys.executable, str(Path(__file__).with_name("_emitter.py")))
RATIO_TARGET = 0.8
P99_TARGET_MS = 50.0
TERMINAL = frozenset({"training.completed", "training.failed", "training.cancelled"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
RAW_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)


@dataclass
class Recorder:
    """The callback's record: the step and ``time.time_ns()`` of every ``training.log`` it got."""

    steps: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)

    def record(self, step: int) -> None:
        self.steps.append(step)
        self.stamps.append(time.time_ns())

    def events_per_second(self) -> float:
        """Callbacks per second from the first callback to the last."""
        return (len(self.stamps) - 1) / ((self.stamps[-1] - self.stamps[0]) / 1e9)

    def checked(self, count: int, what: str) -> Recorder:
        """Self, after making sure the callback saw steps 1..count once each, in order."""
        if self.steps != list(range(1, count + 1)):
            raise SystemExit(f"{what}: the callback saw {len(self.steps)} of {count} in order")
        return self


# --- the Arkor clients ---------------------------------------------------------------------


@dataclass
class Client:
    """A signed-in client with a project on one plane, and the folder its project state is in."""

    session: Session
    folder: Path

    def trainer(self, name: str, recorder: Recorder, job: TrainingJob | None = None) -> Trainer:
        """A trainer (of ``job``, or a new one) whose ``on_log`` feeds ``recorder``."""
        config = JobConfig(model="bench-emitter", dataset_source=HuggingfaceDatasetSource(name="-"))
        trainer = Trainer(
            name,
            config,
            callbacks={"on_log": lambda ctx: recorder.record(ctx.step)},
            cwd=self.folder,
        )
        trainer.session = self.session
        trainer.job = job
        return trainer

    def run_to_end(self, name: str) -> TrainingJob:
        """Start a job and poll until it ends, following nothing."""
        job = self.trainer(name, Recorder()).start()
        while job.status not in TERMINAL_STATUSES:
            time.sleep(0.2)
            job = self.session.client.get_job(self.session.scope, job.id, include_events=False).job
        if job.status != "completed":
            raise SystemExit(f"emitter job {name} {job.status}: {job.error}")
        return job

    def wait(self, job: TrainingJob, recorder: Recorder) -> TrainingResult:
        """``Trainer.wait()`` on a job that has ended: every stored event, as fast as it goes."""
        return self.trainer(job.name, recorder, job).wait()

    def follow_dispatch(self, job: TrainingJob, recorder: Recorder) -> None:
        """``follow_events`` and the ``Dispatcher``: ``Trainer.wait`` minus its bookkeeping."""

        def no_inference(step: int) -> Callable[..., Any]:
            raise AssertionError("only on_checkpoint infers")

        dispatcher = Dispatcher(
            {"on_log": lambda ctx: recorder.record(ctx.step)}, lambda: job, no_inference
        )
        for event in follow_events(self.session.client, self.session.scope, job.id):
            dispatcher.dispatch(event)

    def raw(self, job: TrainingJob, recorder: Recorder) -> None:
        """The hand-written client on this plane's stream."""
        client, scope = self.session.client, self.session.scope
        url = (
            f"{client.base_url}/v1/jobs/{job.id}/events/stream"
            f"?orgSlug={scope.org_slug}&projectSlug={scope.project_slug}"
        )
        headers = {
            "Authorization": f"Bearer {client.token}",
            "X-Arkor-Client": f"arkor-python/{__version__}",
        }
        raw_follow(url, recorder.record, headers)

    def stream_text(self, job: TrainingJob) -> str:
        """The job's event stream as the plane sends it."""
        with self.session.client.stream_events(self.session.scope, job.id) as response:
            return response.read().decode()


@contextlib.contextmanager
def signed_in(url: str, folder: Path) -> Iterator[Client]:
    """A client on the plane at ``url``: a new anonymous identity, with a project for ``folder``."""
    credentials = request_anonymous_token(url)
    with CloudApiClient.from_credentials(credentials) as client:
        folder.mkdir(parents=True)
        scope = ensure_project(client, credentials, folder)
        yield Client(Session(client, scope, "local", url), folder)


# --- the baseline --------------------------------------------------------------------------


class RawSseServer:
    """A minimal hand-written SSE server on loopback.

    Every request gets the frames hand-formatted from ``events`` (id, name, JSON data),
    written in batches as they are formatted, then ``event: end`` and EOF.
    """

    def __init__(self, events: list[tuple[int, str, str]], batch: int = 1000) -> None:
        self.events = events
        self.batch = batch
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-sse", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def __enter__(self) -> RawSseServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise SystemExit("the raw SSE server did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RAW_HEAD)
            for start in range(0, len(self.events), self.batch):
                frames = "".join(
                    f"id: {id}\nevent: {name}\ndata: {data}\n\n"
                    for id, name, data in self.events[start : start + self.batch]
                )
                writer.write(frames.encode())
                await writer.drain()
            writer.write(b"event: end\ndata: {}\n\n")
            await writer.drain()
        finally:
            writer.close()


def sse_fields(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Each frame's fields (``id``, ``event``, ``data``), split by hand at blank lines."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield fields
            fields = {}


def raw_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON object of every frame: ``data:`` lines until a blank line, then ``json.loads``."""
    data: str | None = None
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].removeprefix(" ")
        elif not line and data is not None:
            yield json.loads(data)
            data = None


def raw_follow(
    url: str, on_log: Callable[[int], None], headers: dict[str, str] | None = None
) -> None:
    """The hand-written client: one streamed GET, frames by lines, the callback per log event."""
    with httpx.Client(timeout=60, headers=headers) as http, http.stream("GET", url) as response:
        response.raise_for_status()
        for event in raw_events(response.iter_lines()):
            kind = event.get("type")
            if kind == "training.log":
                on_log(event["step"])
            elif kind in TERMINAL:
                return


# --- arkor serve ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def arkor_serve(home: Path, timeout: float = 30.0) -> Iterator[tuple[int, str]]:
    """``python -m arkor serve`` on ``home`` (workers: the emitter) until the block ends: (pid, url)."""
    port = free_port()
    log = home.with_name(f"{home.name}-serve.log")
    env = {
        **os.environ,
        "ARKOR_HOME": str(home),
        "ARKOR_WORKER_COMMAND": shlex.join(EMITTER),
        "NO_COLOR": "1",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "arkor", "serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/auth/cli/config", timeout=1).is_success:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"arkor serve did not answer:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield process.pid, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stop_strays(workdir: Path) -> None:
    """Kill, by pid, any emitter still running for this run: its command line names ``workdir``.

    A plane stops its workers when it stops; this covers one caught mid-start by a Ctrl-C.
    """
    marker = str(workdir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in command and b"_emitter.py" in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib / 1024


# --- the run -------------------------------------------------------------------------------

ROWS = {
    "raw": "raw asyncio server → raw httpx client",
    "plane_raw": "plane → raw httpx client",
    "plane_follow": "plane → follow_events + Dispatcher",
    "plane_wait": "plane → Trainer.wait",
    "serve_wait": "arkor serve → Trainer.wait",
}


@dataclass
class Results:
    rates: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in ROWS})
    ingest_rate: float = 0.0
    live_rate: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    rss_mib: float = 0.0


def emit_times(stream: str) -> dict[int, int]:
    """Each log event's ``emittedNs`` by step, from the job's stream."""
    return {
        event["step"]: event["emittedNs"]
        for event in raw_events(stream.splitlines())
        if event.get("type") == "training.log"
    }


def run(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results()
    count = args.events

    def measure(key: str, follow: Callable[[Recorder], Any]) -> Any:
        recorder = Recorder()
        outcome = follow(recorder)
        results.rates[key].append(recorder.checked(count, ROWS[key]).events_per_second())
        return outcome

    with arkor_serve(workdir / "idle-home") as (pid, _):
        time.sleep(args.settle)
        results.rss_mib = rss_mib(pid)

    home = workdir / "plane-home"
    settings = dataclasses.replace(load_settings({"ARKOR_HOME": str(home)}), worker_command=EMITTER)
    plane = run_in_thread(settings)
    try:
        with signed_in(plane.url, workdir / "project") as client:
            burst = client.run_to_end(f"burst:{count}")
            frames = [
                (int(fields["id"]), fields["event"], fields["data"])
                for fields in sse_fields(client.stream_text(burst).splitlines())
                if "id" in fields
            ]
            with RawSseServer(frames) as raw:
                for _ in range(args.repeats):  # interleaved, so drift in load hits all alike
                    measure("raw", lambda r: raw_follow(raw.url, r.record))
                    measure("plane_raw", lambda r: client.raw(burst, r))
                    measure("plane_follow", lambda r: client.follow_dispatch(burst, r))
                    result: TrainingResult = measure("plane_wait", lambda r: client.wait(burst, r))
            results.ingest_rate = result.metrics["eventsPerSecond"]  # as the emitter reported it

            live_count = max(2, round(args.rate * args.live_seconds))
            recorder = Recorder()
            trainer = client.trainer(f"steady:{live_count}:{args.rate:g}", recorder)
            results.live_rate = trainer.wait().metrics["eventsPerSecond"]
            recorder.checked(live_count, "live")
            assert trainer.job is not None
            emitted = emit_times(client.stream_text(trainer.job))
            results.latencies_ms = [
                (stamp - emitted[step]) / 1e6
                for step, stamp in zip(recorder.steps, recorder.stamps, strict=True)
            ]
            token, scope = client.session.client.token, client.session.scope
    finally:
        plane.stop()

    with arkor_serve(home) as (_, url), CloudApiClient(url, token) as http:
        served = Client(Session(http, scope, "local", url), workdir / "project")
        for _ in range(args.repeats):
            measure("serve_wait", lambda r: served.wait(burst, r))
    return results


def report(args: argparse.Namespace, results: Results) -> bool:
    """Print the table; True when every target is met."""
    rates = {key: statistics.median(found) for key, found in results.rates.items()}
    ratio = rates["plane_wait"] / rates["raw"]
    cuts = statistics.quantiles(results.latencies_ms, n=100, method="inclusive")
    p50, p90, p99 = cuts[49], cuts[89], cuts[98]
    ratio_ok, latency_ok = ratio >= RATIO_TARGET, p99 <= P99_TARGET_MS
    print(f"\n== replay: {args.events} training.log events, median of {args.repeats} run(s)")
    print(f"   {'server → client':<42}{'events/s':>10}{'µs/event':>10}{'× raw':>8}")
    for key, title in ROWS.items():
        rate = rates[key]
        mark = "  <- target" if key == "plane_wait" else ""
        print(f"   {title:<42}{rate:>10.0f}{1e6 / rate:>10.2f}{rate / rates['raw']:>8.2f}{mark}")
    print(
        f"   target Trainer.wait / raw >= {RATIO_TARGET}: "
        f"{'ok' if ratio_ok else 'MISSED'} ({ratio:.2f})"
    )
    print(
        f"\n== live: {len(results.latencies_ms)} events at {args.rate:g}/s "
        f"(emitter achieved {results.live_rate:.0f}/s), plane → Trainer.wait"
    )
    print(
        f"   emit → callback ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  "
        f"max {max(results.latencies_ms):.1f}"
    )
    print(f"   target p99 <= {P99_TARGET_MS:.0f} ms: {'ok' if latency_ok else 'MISSED'}")
    print(
        f"\n== ingest: the emitter posted {args.events} events at {results.ingest_rate:.0f}/s "
        "(one POST each, flat out)"
    )
    print(f"== idle RSS of python -m arkor serve (empty home): {results.rss_mib:.1f} MiB")
    print(f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    return ratio_ok and latency_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events replayed (default 20000)")
    parser.add_argument(
        "--rate", type=float, default=300.0, help="live events per second (default 300)"
    )
    parser.add_argument(
        "--live-seconds", type=float, default=10.0, help="length of the live run (default 10)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="replays of each client (default 3)")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="idle seconds before reading RSS (default 1)"
    )
    args = parser.parse_args()
    if args.events < 2 or args.rate <= 0 or args.repeats < 1:
        parser.error("--events must be at least 2, --rate positive, --repeats at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="arkor-bench-events-"))
    os.environ["ARKOR_HOME"] = str(workdir / "client-home")  # nothing touches ~/.arkor
    try:
        results = run(args, workdir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop_strays(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    sys.exit(main())
