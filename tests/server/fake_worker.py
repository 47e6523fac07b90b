"""A stand-in for ``python -m arkor.engine.worker``: the same protocol, no training.

The job's name says what it does, so plane tests run in milliseconds:
``exit:<code>`` exits at once without an event; ``sleep`` starts and then waits to be
stopped; ``events:<n>`` reports n log steps and completes; ``until-cancel`` starts and
heartbeats until a cancel arrives, then reports it; ``ignore-cancel`` starts and never
stops on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from arkor.cloud import TrainingCancelled, TrainingCompleted, TrainingLog, TrainingStarted
from arkor.engine._worker import TOKEN_ENV, PlaneClient


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--plane-url", "--job-id", "--artifacts"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    plane = PlaneClient(args.plane_url, args.job_id, os.environ[TOKEN_ENV], lost_after=5)
    assignment = plane.job()
    job = assignment.job
    action, _, argument = job.name.partition(":")
    if action == "exit":
        return int(argument)
    plane.post_event(TrainingStarted(job_id=job.id, metadata={"resume": assignment.resume}))
    if action == "events":
        for step in range(1, int(argument) + 1):
            plane.post_event(TrainingLog(job_id=job.id, step=step, loss=1 / step))
        plane.post_event(TrainingCompleted(job_id=job.id, metrics={"step": int(argument)}))
        return 0
    if action == "until-cancel":
        while not plane.heartbeat().cancel_requested:
            time.sleep(0.05)
        plane.post_event(TrainingCancelled(job_id=job.id, step=0))
        return 0
    time.sleep(3600)  # sleep, ignore-cancel: wait to be stopped
    return 0


if __name__ == "__main__":
    sys.exit(main())
