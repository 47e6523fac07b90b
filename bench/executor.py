"""What running a job's worker on Ray costs, against the local executor, in one run.

    python bench/executor.py [--jobs 3] [--steps 4]

Two planes on loopback, each with its own temporary home: one with the default local
executor (the baseline: the plane starts the worker as its own subprocess), one with
``--executor ray`` in front of a real Ray head started here (``ray start --head`` on
loopback, 2 CPUs, stopped at the end). Both receive the same tiny job (a random tiny model,
the same uploaded rows, ``--steps`` steps) over HTTP, one job at a time, as a user's
``arkor start`` would send it, and the client follows the job's event stream (SSE):

- submit → first event: from the ``POST /v1/jobs`` to the ``training.started`` frame;
- submit → completed: to the ``training.completed`` frame;
- per-job overhead: Ray's median submit → completed minus the local executor's.

The first job on each plane is reported on its own ("cold": Ray starts a job supervisor
and the worker imports torch from a cold page cache); the medians are over the ``--jobs``
jobs after it. Needs ``pip install 'arkor[ray]'``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.utils.plane import Caller, running_plane, sign_up, tiny_job, toy_dataset, upload  # noqa: E402
from tests.utils.ray_head import RayHead, ray_head  # noqa: E402
from tests.utils.tiny_model import build_tiny_model  # noqa: E402


@dataclass(frozen=True)
class Timing:
    first_event: float
    completed: float


def one_job(caller: Caller, body: dict[str, object]) -> Timing:
    """Submit ``body`` and follow its events to the end; seconds from the submit."""
    started = time.perf_counter()
    answer = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    answer.raise_for_status()
    job_id = answer.json()["job"]["id"]
    first: float | None = None
    with caller.http.stream(
        "GET",
        f"/v1/jobs/{job_id}/events/stream",
        params=caller.scope,
        headers={"Accept": "text/event-stream"},
        timeout=600,
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("event: "):
                continue
            kind = line.removeprefix("event: ")
            if kind == "training.started" and first is None:
                first = time.perf_counter() - started
            elif kind == "training.completed":
                assert first is not None, "training.completed before training.started"
                return Timing(first, time.perf_counter() - started)
            elif kind in ("training.failed", "training.cancelled", "end"):
                job = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["job"]
                raise SystemExit(f"job {job_id} ended {job['status']}: {job.get('error')}")
    raise SystemExit(f"the event stream of job {job_id} ended before the job did")


@contextmanager
def plane(home: Path, head: RayHead | None) -> Iterator[Caller]:
    """A signed-up caller on a plane: with ``--executor ray`` in front of ``head``, else local."""
    overrides: dict[str, object] = {}
    if head is not None:
        overrides = {
            "executor": "ray",
            "ray_address": head.dashboard_url,
            "ray_worker_command": (sys.executable, "-m", "arkor.engine.worker"),
            "ray_runtime_env": {
                "env_vars": {"HF_HUB_OFFLINE": "1", "ARKOR_TELEMETRY_DISABLED": "1"}
            },
        }
    with running_plane(home, **overrides) as running:
        caller = sign_up(running.url)
        try:
            yield caller
        finally:
            caller.close()


def run(head: RayHead | None, model: Path, args: argparse.Namespace) -> list[Timing]:
    """A cold job, then ``--jobs`` measured ones, on a fresh plane (on Ray with ``head``)."""
    executor = "local" if head is None else "ray"
    with (
        tempfile.TemporaryDirectory(prefix=f"arkor-bench-{executor}-") as home,
        plane(Path(home), head) as caller,
    ):
        body = tiny_job(model, upload(caller, toy_dataset()), maxSteps=args.steps)
        timings = []
        for index in range(args.jobs + 1):
            timing = one_job(caller, body)
            label = "cold" if index == 0 else f"job {index}"
            print(
                f"  {executor:<5} {label:<6} first event {timing.first_event:6.2f} s"
                f"   completed {timing.completed:6.2f} s",
                flush=True,
            )
            timings.append(timing)
        return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="measured jobs per executor")
    parser.add_argument("--steps", type=int, default=4, help="training steps per job")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="arkor-bench-ray-") as scratch:
        root = Path(scratch)
        model = build_tiny_model(root / "tiny")
        print(f"tiny model, {args.steps} steps per job, {args.jobs} jobs after a cold one")
        local = run(None, model, args)
        print("  starting a Ray head on loopback...", flush=True)
        with ray_head(root / "head") as head:
            ray = run(head, model, args)

    def median(timings: list[Timing], field: str) -> float:
        return statistics.median(float(getattr(timing, field)) for timing in timings[1:])

    print(f"\nmedians over {args.jobs} warm jobs (seconds)")
    print(f"  {'':<24}{'local':>8}{'ray':>8}{'ray - local':>13}{'ray / local':>13}")
    for name, field in (
        ("submit -> first event", "first_event"),
        ("submit -> completed", "completed"),
    ):
        a, b = median(local, field), median(ray, field)
        print(f"  {name:<24}{a:8.2f}{b:8.2f}{b - a:13.2f}{b / a:12.2f}x")
    cold = ray[0].completed - local[0].completed
    print(
        f"  per-job overhead of Ray: {median(ray, 'completed') - median(local, 'completed'):.2f} s warm, {cold:.2f} s cold"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
