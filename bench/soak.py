"""``arkor serve`` under sustained load: flat resources, no 5xx, ingest that watchers don't slow.

    python bench/soak.py [--clients 40] [--minutes 1] [--events 2000] [--watchers 100]

Starts ``python -m arkor serve`` on an ephemeral loopback port with a temporary
``ARKOR_HOME``; its job worker is ``bench/_emitter.py`` (the real worker protocol, log
events instead of training). Then:

- soak: ``--clients`` concurrent clients for ``--minutes``, each a loop of reads
  (``GET /v1/me``, job lists), job submissions, SSE watchers (a job's stream to its end)
  and uploads; latency p50/p99 of every non-streaming request and answers by status;
- ingest: one job's worker posts ``--events`` events flat out, with nobody watching and
  with ``--watchers`` SSE streams following it live (each checked to get every event
  once, in order), ``--repeats`` times each, alternately; events/s as the worker measured
  it, and the ratio of the best run of each (the run least slowed by other load).

The serve process's open fds, RSS and threads are read (psutil) cold (after one request
of each kind), at the start (after ``--warmup`` seconds of the same load and one ingest
with watchers, so pools, caches and buffers have reached their working size), and at the
end; each after ``--settle`` idle seconds. Targets, printed beside the figures: fds and
RSS at the end ≤ start + 10 % (flat under sustained load), no 5xx, ingest with watchers
≥ 0.67× without. Exit 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arkor._version import __version__  # noqa: E402
from arkor.cloud import HuggingfaceDatasetSource, JobConfig  # noqa: E402

EMITTER = (sys.executable, str(Path(__file__).with_name("_emitter.py")))
GROWTH_TARGET = 1.10
INGEST_RATIO_TARGET = 0.67
IDENTITIES = 4
MAX_JOBS = 2
HEADERS = {"X-Arkor-Client": f"arkor-python/{__version__}"}
TERMINAL = ("completed", "failed", "cancelled")
END = b"event: end\ndata: {}\n\n"


@dataclass
class Snapshot:
    """What the serve process holds at one moment."""

    fds: int
    rss_mib: float
    threads: int

    @classmethod
    def of(cls, pid: int) -> Snapshot:
        process = psutil.Process(pid)
        return cls(process.num_fds(), process.memory_info().rss / 2**20, process.num_threads())


@dataclass
class Tally:
    """Latencies of non-streaming requests, and every answer by status (or transport error)."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def record(self, started: float, status: int | str) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[str(status)] += 1


@dataclass
class Identity:
    token: str
    scope: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {**HEADERS, "Authorization": f"Bearer {self.token}"}


# --- arkor serve ---------------------------------------------------------------------------


@contextlib.contextmanager
def arkor_serve(home: Path, log: Path, timeout: float = 60.0) -> Iterator[tuple[int, str]]:
    """``python -m arkor serve --port 0`` on ``home`` until the block ends: (pid, url)."""
    env = {
        **os.environ,
        "ARKOR_HOME": str(home),
        "ARKOR_WORKER_COMMAND": shlex.join(EMITTER),
        "ARKOR_MAX_JOBS": str(MAX_JOBS),
        "NO_COLOR": "1",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "arkor", "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + timeout
        url = ""
        while not url:
            for word in log.read_text(errors="replace").split():
                if word.startswith("http://127.0.0.1:"):
                    url = word
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"arkor serve did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield process.pid, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def sign_in(http: httpx.AsyncClient, index: int) -> Identity:
    """A new anonymous identity with a project, waiting out a mint rate limit if there is one."""
    while True:
        answer = await http.post("/v1/auth/anonymous", json={"kind": "cli"}, headers=HEADERS)
        if answer.status_code != 429:
            break
        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
    answer.raise_for_status()
    body = answer.json()
    identity = Identity(body["token"], {"orgSlug": body["personalOrg"]["slug"]})
    created = await http.post(
        "/v1/projects",
        params=identity.scope,
        json={"name": f"soak {index}", "slug": f"soak-{index}"},
        headers=identity.headers,
    )
    created.raise_for_status()
    identity.scope["projectSlug"] = f"soak-{index}"
    return identity


def job_body(name: str) -> dict[str, Any]:
    config = JobConfig(model="bench-emitter", dataset_source=HuggingfaceDatasetSource(name="-"))
    return {"name": name, "config": config.to_wire()}


async def submit(http: httpx.AsyncClient, who: Identity, name: str, tally: Tally | None) -> str:
    started = time.perf_counter()
    answer = await http.post("/v1/jobs", params=who.scope, json=job_body(name), headers=who.headers)
    if tally is not None:
        tally.record(started, answer.status_code)
    answer.raise_for_status()
    job_id: str = answer.json()["job"]["id"]
    return job_id


async def stream_ids(
    http: httpx.AsyncClient, who: Identity, job_id: str, opened: asyncio.Event | None = None
) -> list[int]:
    """The ids of every event on the job's stream, until ``end``.

    Read as raw bytes and parsed once at the end, so a hundred watchers in this process
    take little of the CPU the plane under test needs.
    """
    chunks: list[bytes] = []
    path = f"/v1/jobs/{job_id}/events/stream"
    async with http.stream("GET", path, params=who.scope, headers=who.headers) as response:
        response.raise_for_status()
        if opened is not None:
            opened.set()
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            if chunk.endswith(END):
                break
    return [int(line[4:]) for line in b"".join(chunks).split(b"\n") if line.startswith(b"id: ")]


async def wait_ended(http: httpx.AsyncClient, who: Identity, job_id: str) -> dict[str, Any]:
    while True:
        answer = await http.get(f"/v1/jobs/{job_id}", params=who.scope, headers=who.headers)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        if body["job"]["status"] in TERMINAL:
            return body
        await asyncio.sleep(0.2)


# --- the soak ------------------------------------------------------------------------------


class Soak:
    """``clients`` loops of mixed requests against one plane until a deadline."""

    def __init__(self, http: httpx.AsyncClient, identities: list[Identity]) -> None:
        self.http = http
        self.identities = identities
        self.tally = Tally()
        self.jobs: dict[int, list[str]] = {i: [] for i in range(len(identities))}
        self.submissions = 0
        self._next_submit = 0.0

    async def request(self, method: str, path: str, who: Identity, **options: Any) -> None:
        started = time.perf_counter()
        try:
            headers = {**who.headers, **options.pop("headers", {})}
            answer = await self.http.request(
                method, path, params=who.scope, headers=headers, **options
            )
        except httpx.HTTPError as error:
            self.tally.record(started, type(error).__name__)
            return
        self.tally.record(started, answer.status_code)

    async def client(self, index: int, deadline: float) -> None:
        which = index % len(self.identities)
        who = self.identities[which]
        rng = random.Random(index)
        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.45:
                await self.request("GET", "/v1/me", who)
            elif roll < 0.75:
                await self.request("GET", "/v1/jobs", who)
            elif roll < 0.85:
                data = os.urandom(rng.randrange(1, 64 * 1024))
                await self.request(
                    "POST",
                    "/v1/uploads",
                    who,
                    content=data,
                    headers={
                        "X-Content-Sha256": hashlib.sha256(data).hexdigest(),
                        "X-Filename": "train.jsonl",
                    },
                )
            elif roll < 0.93 and time.monotonic() >= self._next_submit:
                self._next_submit = time.monotonic() + 1.0  # about one job a second, all clients
                self.submissions += 1
                with contextlib.suppress(httpx.HTTPError):
                    job_id = await submit(self.http, who, "steady:40:200", self.tally)
                    self.jobs[which].append(job_id)
            elif self.jobs[which]:
                job_id = rng.choice(self.jobs[which][-5:])
                try:
                    await asyncio.wait_for(stream_ids(self.http, who, job_id), 60)
                except (httpx.HTTPError, TimeoutError) as error:
                    self.tally.statuses[f"stream {type(error).__name__}"] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.05))


async def soak(url: str, clients: int, seconds: float) -> Soak:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        identities = [await sign_in(http, i) for i in range(min(IDENTITIES, clients))]
        run = Soak(http, identities)
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(run.client(i, deadline) for i in range(clients)))
        for which, jobs in run.jobs.items():  # let the queue drain before the end figures
            for job_id in jobs:
                await wait_ended(http, identities[which], job_id)
        return run


# --- ingest with and without watchers -----------------------------------------------------


async def ingest(url: str, events: int, watchers: int) -> float:
    """Events/s one job's worker posted at, with ``watchers`` SSE streams following it live."""
    limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=watchers + 10)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        who = await sign_in(http, 1000 + watchers)
        # with watchers, jobs filling every slot hold the burst back until all are attached
        blockers = [
            await submit(http, who, "steady:5:2", None) for _ in range(MAX_JOBS if watchers else 0)
        ]
        job_id = await submit(http, who, f"burst:{events}", None)
        opened = [asyncio.Event() for _ in range(watchers)]
        streams = [asyncio.create_task(stream_ids(http, who, job_id, event)) for event in opened]
        await asyncio.gather(*(event.wait() for event in opened))
        body = await wait_ended(http, who, job_id)
        received = await asyncio.gather(*streams)
        for job in blockers:
            await wait_ended(http, who, job)
    expected = list(range(1, events + 3))  # started, the logs, completed
    for ids in received:
        if ids != expected:
            raise SystemExit(f"a watcher got {len(ids)} of {len(expected)} events in order")
    if body["job"]["status"] != "completed":
        job = body["job"]
        raise SystemExit(f"the ingest job ended {job['status']}: {job.get('error')}")
    rate: float = body["events"][-1]["metrics"]["eventsPerSecond"]
    return rate


async def settle(url: str, seconds: float) -> None:
    """Idle a while so finished requests' threads and buffers can go."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await http.get("/v1/auth/cli/config", headers=HEADERS)
    await asyncio.sleep(seconds)


async def warm_up(url: str) -> None:
    """Every kind of request once, so the start figures include what first use loads."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        who = await sign_in(http, 999)
        await http.get("/v1/me", headers=who.headers)
        await http.get("/v1/jobs", params=who.scope, headers=who.headers)
        data = b'{"messages": []}\n'
        await http.post(
            "/v1/uploads",
            params=who.scope,
            content=data,
            headers={**who.headers, "X-Content-Sha256": hashlib.sha256(data).hexdigest()},
        )
        job_id = await submit(http, who, "burst:50", None)
        await stream_ids(http, who, job_id)
        await wait_ended(http, who, job_id)


# --- report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(
    args: argparse.Namespace,
    snapshots: tuple[Snapshot, Snapshot, Snapshot],
    run: Soak,
    rates: dict[int, list[float]],
) -> bool:
    cold, start, end = snapshots
    rate = {count: max(found) for count, found in rates.items()}
    fds_ok = end.fds <= start.fds * GROWTH_TARGET
    rss_ok = end.rss_mib <= start.rss_mib * GROWTH_TARGET
    five = sum(n for status, n in run.tally.statuses.items() if status.startswith("5"))
    ratio = rate[args.watchers] / rate[0]
    ratio_ok = ratio >= INGEST_RATIO_TARGET
    latencies = run.tally.latencies_ms
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    print(f"\n== soak: {args.clients} clients for {args.minutes:g} min against arkor serve")
    print(f"   {'':<10}{'cold':>10}{'start':>10}{'end':>10}   target: end <= start + 10 %")
    print(f"   {'fds':<10}{cold.fds:>10}{start.fds:>10}{end.fds:>10}   {verdict(fds_ok)}")
    print(
        f"   {'RSS MiB':<10}{cold.rss_mib:>10.1f}{start.rss_mib:>10.1f}{end.rss_mib:>10.1f}"
        f"   {verdict(rss_ok)}"
    )
    print(f"   {'threads':<10}{cold.threads:>10}{start.threads:>10}{end.threads:>10}")
    spread = (
        f"latency ms p50 {cuts[49]:.1f}  p99 {cuts[98]:.1f}  max {max(latencies):.1f}"
        if cuts
        else "too few requests for latencies"
    )
    print(f"   {len(latencies)} requests, {run.submissions} jobs submitted; {spread}")
    answers = "  ".join(f"{status}: {n}" for status, n in sorted(run.tally.statuses.items()))
    print(f"   answers: {answers}")
    print(f"   target no 5xx: {verdict(five == 0)} ({five})")
    print(
        f"\n== ingest: one job posting {args.events} events flat out, best of {args.repeats} run(s)"
    )
    for count, title in ((0, "no watchers"), (args.watchers, f"{args.watchers} SSE watchers")):
        runs = ", ".join(f"{found:.0f}" for found in rates[count])
        print(f"   {title:<18}{rate[count]:>8.0f} events/s   ({runs})")
    print(f"   target with/without >= {INGEST_RATIO_TARGET}: {verdict(ratio_ok)} ({ratio:.2f})")
    print(f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    return fds_ok and rss_ok and five == 0 and ratio_ok


async def main_async(args: argparse.Namespace, workdir: Path) -> bool:
    with arkor_serve(workdir / "home", workdir / "serve.log") as (pid, url):
        await warm_up(url)
        await settle(url, args.settle)
        cold = Snapshot.of(pid)
        await soak(url, args.clients, args.warmup)
        await ingest(url, args.events, args.watchers)
        await settle(url, args.settle)
        start = Snapshot.of(pid)
        run = await soak(url, args.clients, args.minutes * 60)
        rates: dict[int, list[float]] = {0: [], args.watchers: []}
        for _ in range(args.repeats):
            for count in rates:
                rates[count].append(await ingest(url, args.events, count))
        await settle(url, args.settle)
        end = Snapshot.of(pid)
    return report(args, (cold, start, end), run, rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=40, help="concurrent clients (default 40)")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the soak (default 1)")
    parser.add_argument(
        "--warmup", type=float, default=15.0, help="seconds of load before the start figures"
    )
    parser.add_argument("--repeats", type=int, default=2, help="ingest runs of each (default 2)")
    parser.add_argument("--events", type=int, default=2000, help="ingest events (default 2000)")
    parser.add_argument(
        "--watchers", type=int, default=100, help="SSE watchers of the ingest job (default 100)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=12.0,
        help="idle seconds before each reading (default 12: idle worker threads retire after 10)",
    )
    args = parser.parse_args()
    if min(args.clients, args.watchers, args.repeats) < 1 or args.events < 2:
        parser.error("--clients, --watchers and --repeats at least 1, --events at least 2")
    if args.minutes < 0 or args.warmup < 0:
        parser.error("--minutes and --warmup can't be negative")
    workdir = Path(tempfile.mkdtemp(prefix="arkor-bench-soak-"))
    os.environ["ARKOR_HOME"] = str(workdir / "client-home")  # nothing touches ~/.arkor
    try:
        ok = asyncio.run(main_async(args, workdir))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
