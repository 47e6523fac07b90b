"""A project that trains the tiny model for real, with callbacks that record what they see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arkor.cli.main import run
from tests.utils.requires import need

need("fastapi", "the SDK tests run the real plane")
need("torch", "the SDK tests train for real")


RECORDING_CALLBACKS = """\
import json
from pathlib import Path

LOG = Path(__file__).resolve().parent.parent / "callbacks.log"


def record(kind, **fields):
    with LOG.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, **fields}) + "\\n")


def on_started(ctx):
    record("started", job=ctx.job.id)


def on_log(ctx):
    record("log", step=ctx.step, loss=ctx.loss)


def on_checkpoint(ctx):
    response = ctx.infer(
        messages=[{"role": "user", "content": "say hello"}], max_tokens=6, temperature=0
    )
    answer = response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else None
    record("checkpoint", step=ctx.step, status=response.status_code, answer=answer)


def on_eval(ctx):
    record("eval", step=ctx.step, final=ctx.final, rows=ctx.rows)


def on_completed(ctx):
    record("completed", metrics=ctx.metrics)


def on_failed(ctx):
    record("failed", error=ctx.error)
"""

FAST_RUN = [
    "trainer.max_steps=6",
    "trainer.save_steps=3",
    "trainer.logging_steps=2",
    "trainer.batch_size=4",
    "trainer.lora.max_length=128",
]


@pytest.fixture
def trained_project(project: Path, tiny_model: Path) -> Path:
    """`arkor init` (blank template, on the tiny model) with recording callbacks, built."""
    assert run(["init", "--yes", "--template", "blank", "--name", "demo"]) == 0
    (project / "demo" / "callbacks.py").write_text(RECORDING_CALLBACKS, encoding="utf-8")
    config = project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'on_failed = "demo.callbacks:on_failed"',
            'on_failed = "demo.callbacks:on_failed"\non_started = "demo.callbacks:on_started"',
        ),
        encoding="utf-8",
    )
    assert run(build_args(tiny_model)) == 0
    return project


def build_args(tiny_model: Path, *overrides: str) -> list[str]:
    """`arkor build` on the tiny model with the fast settings, plus ``overrides``."""
    args = ["build", "--set", f"trainer.model={tiny_model}"]
    for override in (*FAST_RUN, *overrides):
        args += ["--set", override]
    return args


def recorded(project: Path) -> list[dict[str, Any]]:
    """What the recording callbacks saw, in order."""
    log = project / "callbacks.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
