"""The job worker for ``bench/events.py``: the real worker protocol, log events instead of training.

The plane starts it like ``python -m arkor.engine.worker`` (``--plane-url``, ``--job-id``,
``--artifacts``, the job token in ``ARKOR_JOB_TOKEN``). It claims the job, beats the
heartbeat, posts numbered events to ``POST /v1/internal/jobs/{id}/events`` one after
another, as a training run does, and ends with ``training.completed``.

The job's name says what to emit:

- ``burst:N``: N ``training.log`` events, each posted as soon as the last was accepted;
- ``steady:N:RATE``: N events at RATE per second (on a fixed schedule, catching up when
  a post runs late).

Every log event carries its emit time, ``time.time_ns()`` taken just before the post, as
the extra field ``emittedNs`` (wire models keep unknown keys). ``training.completed``
reports ``events``, ``seconds`` and ``eventsPerSecond``: the rate the plane took them at.
A plane unreachable for 2 s ends it, so none outlives a stopped plane for long.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from arkor.cloud import TrainingCancelled, TrainingCompleted, TrainingLog, TrainingStarted
from arkor.engine._worker import TOKEN_ENV, Heartbeat, PlaneClient


def emit(plane: PlaneClient, job_id: str, count: int, rate: float | None) -> float | None:
    """Post ``count`` log events (at ``rate`` per second, or flat out); the seconds it took.

    None when a cancel arrived (the cancel event is then already posted).
    """
    stop = threading.Event()
    heartbeat = Heartbeat(plane, stop)
    heartbeat.start()
    try:
        start = time.perf_counter()
        for step in range(1, count + 1):
            if rate:
                delay = start + (step - 1) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            event = TrainingLog(
                job_id=job_id,
                step=step,
                loss=2.5 / (1 + step / 100),
                learning_rate=2e-4 * (1 - step / (count + 1)),
                epoch=step / count,
                emittedNs=time.time_ns(),
            )
            if plane.post_event(event).cancel_requested or stop.is_set():
                plane.post_event(TrainingCancelled(job_id=job_id, step=step))
                return None
        return time.perf_counter() - start
    finally:
        heartbeat.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option in ("--plane-url", "--job-id", "--artifacts"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    token = os.environ.pop(TOKEN_ENV, "")
    plane = PlaneClient(args.plane_url, args.job_id, token, lost_after=2.0)
    try:
        job = plane.job().job
        mode, *numbers = job.name.split(":")
        if mode not in ("burst", "steady") or len(numbers) != (1 if mode == "burst" else 2):
            raise SystemExit(f"unknown job name {job.name!r}: use burst:N or steady:N:RATE")
        count = int(numbers[0])
        rate = float(numbers[1]) if mode == "steady" else None
        plane.post_event(TrainingStarted(job_id=job.id, metadata={"emitter": job.name}))
        seconds = emit(plane, job.id, count, rate)
        if seconds is None:
            return 1
        metrics = {"events": count, "seconds": seconds, "eventsPerSecond": count / seconds}
        plane.post_event(TrainingCompleted(job_id=job.id, metrics=metrics))
        return 0
    finally:
        plane.close()


if __name__ == "__main__":
    sys.exit(main())
