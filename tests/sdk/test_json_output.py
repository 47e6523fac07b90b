"""`arkor start --json` as a script sees it: stdout is JSON Lines and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arkor.cli.main import run
from tests.sdk.conftest import RECORDING_CALLBACKS, build_args
from tests.utils.ports import unused_arkor_port

__all__ = ["unused_arkor_port"]

pytestmark = pytest.mark.usefixtures("unused_arkor_port")

NOISY_CALLBACKS = (
    "import logging\nimport sys\nimport threading\n"
    + RECORDING_CALLBACKS
    + """

logger = logging.getLogger("demo.callbacks")
logger.addHandler(logging.StreamHandler(sys.stdout))
logger.setLevel(logging.INFO)
print("imported the callbacks")


def on_log(ctx):
    record("log", step=ctx.step, loss=ctx.loss)
    print(f"callback saw step {ctx.step}")
    logger.info("logged step %s", ctx.step)
    thread = threading.Thread(target=print, args=(f"a thread saw step {ctx.step}",))
    thread.start()
    thread.join()


def on_completed(ctx):
    record("completed", metrics=ctx.metrics)
    print("callback saw the end")
"""
)


def test_every_stdout_line_is_json_and_the_last_is_the_summary(
    trained_project: Path, tiny_model: Path
) -> None:
    (trained_project / "demo" / "callbacks.py").write_text(NOISY_CALLBACKS, encoding="utf-8")
    assert run(build_args(tiny_model)) == 0

    completed = subprocess.run(
        [sys.executable, "-m", "arkor", "start", "--json"],
        cwd=trained_project,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    parsed = [json.loads(line) for line in lines]  # every line, or this raises
    *events, summary = parsed
    assert events[0]["type"] == "training.started"
    assert events[-1]["type"] == "training.completed"
    assert [event["step"] for event in events if event["type"] == "training.log"] == [2, 4, 6]
    assert summary["status"] == "completed"
    assert summary["job"]["status"] == "completed"
    assert summary["metrics"]["step"] == 6
    assert Path(summary["adapter"]).is_dir()
    for said in ("imported the callbacks", "callback saw step 2", "logged step 4"):
        assert said in completed.stderr
    assert "a thread saw step 6" in completed.stderr
    assert "callback saw the end" in completed.stderr
    assert "Using the embedded local plane" in completed.stderr
