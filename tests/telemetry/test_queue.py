"""The queue under processes that drain it and put events back in it at the same time."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from arkor._home import arkor_home
from tests.telemetry.conftest import queued

RACER = """
import sys
from pathlib import Path
from arkor.telemetry._files import drain_queue, requeue

home, name = Path(sys.argv[1]), sys.argv[2]
for number in range(100):
    requeue(home, [{"uuid": f"{name}-{number}", "timestamp": ""}])  # a command queues
    requeue(home, drain_queue(home, wait=30))  # a command drains, its sender puts them back
"""


def test_processes_draining_and_requeueing_at_once_lose_and_duplicate_nothing() -> None:
    home = arkor_home()
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(home), f"racer{index}"])
        for index in range(4)
    ]
    for racer in racers:
        assert racer.wait(120) == 0
    uuids = Counter(event["uuid"] for event in queued())
    assert len(uuids) == 400 and max(uuids.values()) == 1
