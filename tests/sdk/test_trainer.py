"""The Python SDK against a real plane: create_trainer, start/wait/cancel, callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor._home import arkor_home
from arkor.config import ConfigError
from arkor.errors import UsageError
from arkor.sdk import (
    AbortHandle,
    CallbackError,
    CheckpointContext,
    TrainingLogContext,
    WaitAborted,
    create_arkor,
    create_trainer,
    is_arkor,
    run_trainer,
)
from arkor.server import RunningPlane
from tests.utils.engine_answer import greedy_answer
from tests.utils.plane import running_plane

ROWS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [
        ("say hello", "hello world"),
        ("capital of france?", "paris"),
        ("count to three", "one two three"),
    ]
] * 4
HELLO = [{"role": "user", "content": "say hello"}]
ANSWER_TOKENS = 6


@pytest.fixture
def data(project: Path) -> Path:
    path = project / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def engine_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    """One plane for the module, named explicitly, so nothing here depends on port 8765."""
    with running_plane(tmp_path_factory.mktemp("plane") / "home") as plane:
        yield plane


@pytest.fixture(autouse=True)
def on_engine_plane(engine_plane: RunningPlane, monkeypatch: pytest.MonkeyPatch) -> RunningPlane:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", engine_plane.url)
    return engine_plane


def assert_checkpoint_answers(tiny_model: Path, checkpoints: Path, answers: dict[int, str]) -> None:
    """Each checkpoint in ``checkpoints`` answered as the engine does with it, not as the base does."""
    base = greedy_answer(tiny_model, None, HELLO, ANSWER_TOKENS)
    for step, answer in answers.items():
        expected = greedy_answer(
            tiny_model, checkpoints / f"checkpoint-{step}", HELLO, ANSWER_TOKENS
        )
        assert expected != base, f"checkpoint {step} answers as the base does"
        assert answer == expected, f"checkpoint {step}"


def settings(tiny_model: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "sdk-run",
        "model": str(tiny_model),
        "dataset": {"type": "file", "path": "data.jsonl"},
        "max_steps": 4,
        "logging_steps": 1,
        "save_steps": 2,
        "batch_size": 4,
        "lora": {"r": 4, "alpha": 8, "max_length": 64},
        **overrides,
    }


def test_callbacks_see_every_event_once_in_order(
    tiny_model: Path, data: Path, engine_plane: RunningPlane
) -> None:
    seen: list[tuple[str, int | None]] = []
    answers: dict[int, str] = {}

    def on_checkpoint(ctx: CheckpointContext) -> None:
        seen.append(("checkpoint", ctx.step))
        response = ctx.infer(HELLO, max_tokens=ANSWER_TOKENS, temperature=0)
        assert response.status_code == 200, response.text
        answers[ctx.step] = response.json()["choices"][0]["message"]["content"]

    async def on_log(ctx: TrainingLogContext) -> None:
        await asyncio.sleep(0)
        seen.append(("log", ctx.step))

    trainer = create_trainer(
        callbacks={
            "on_started": lambda ctx: seen.append(("started", None)),
            "on_log": on_log,
            "on_checkpoint": on_checkpoint,
            "on_completed": lambda ctx: seen.append(("completed", ctx.metrics["step"])),
            "on_failed": lambda ctx: seen.append(("failed", None)),
        },
        **settings(tiny_model, learning_rate=5e-3),
    )
    try:
        first = trainer.start()
        assert trainer.start().id == first.id, "start() is idempotent"
        result = trainer.wait()
    finally:
        trainer.close()
    assert result.status == "completed"
    assert result.job.status == "completed"
    assert seen == [
        ("started", None),
        ("log", 1),
        ("log", 2),
        ("checkpoint", 2),
        ("log", 3),
        ("log", 4),
        ("checkpoint", 4),
        ("completed", 4),
    ]
    assert_checkpoint_answers(
        tiny_model, engine_plane.settings.artifacts_dir / result.job.id / "checkpoints", answers
    )


def test_cancel_ends_the_job_cancelled_and_calls_neither_final_callback(
    tiny_model: Path, data: Path
) -> None:
    finals: list[str] = []
    trainer = create_trainer(
        callbacks={
            "on_log": lambda ctx: trainer.cancel() if ctx.step == 1 else None,
            "on_completed": lambda ctx: finals.append("completed"),
            "on_failed": lambda ctx: finals.append("failed"),
        },
        **settings(tiny_model, max_steps=1000, save_steps=1000),
    )
    try:
        result = trainer.wait()
    finally:
        trainer.close()
    assert result.status == "cancelled"
    assert result.job.status == "cancelled"
    assert finals == []


def test_a_raising_callback_fails_wait_at_once_with_its_exception(
    tiny_model: Path, data: Path
) -> None:
    delivered: list[str] = []
    logged: list[int] = []

    def on_log(ctx: TrainingLogContext) -> None:
        logged.append(ctx.step)
        raise ValueError("bad callback")

    trainer = create_trainer(
        callbacks={"on_log": on_log, "on_checkpoint": lambda ctx: logged.append(-ctx.step)},
        **settings(tiny_model, max_steps=6),
    )
    try:
        with pytest.raises(CallbackError) as error:
            trainer.wait(on_event=lambda event: delivered.append(event.type))
    finally:
        trainer.close()
    assert type(error.value.__cause__) is ValueError
    assert str(error.value.__cause__) == "bad callback"
    assert error.value.callback == "on_log"
    assert logged == [1], "no callback ran after the one that raised"
    assert delivered == ["training.started", "training.log"], "the wait ended at that event"


def test_abort_stops_waiting_and_a_later_wait_resumes_without_repeats(
    tiny_model: Path, data: Path
) -> None:
    abort = AbortHandle()
    steps: list[int] = []

    def on_log(ctx: TrainingLogContext) -> None:
        steps.append(ctx.step)
        if ctx.step == 2:
            abort.abort()

    trainer = create_trainer(callbacks={"on_log": on_log}, **settings(tiny_model))
    try:
        with pytest.raises(WaitAborted):
            trainer.wait(abort=abort)
        assert steps[-1] == 2
        result = trainer.wait()
    finally:
        trainer.close()
    assert result.status == "completed"
    assert steps == [1, 2, 3, 4], "each event once, across both waits"


def test_async_twins(tiny_model: Path, data: Path) -> None:
    async def scenario() -> str:
        trainer = create_trainer(**settings(tiny_model, max_steps=2))
        try:
            await trainer.start_async()
            return (await trainer.wait_async()).status
        finally:
            trainer.close()

    assert asyncio.run(scenario()) == "completed"


def test_invalid_settings_are_config_errors(tiny_model: Path, data: Path) -> None:
    with pytest.raises(ConfigError) as error:
        create_trainer(**settings(tiny_model, max_step=3))
    assert "max_step" in str(error.value)


def test_unknown_callback_names_are_refused_before_anything_is_submitted(
    tiny_model: Path, data: Path
) -> None:
    with pytest.raises(UsageError) as error:
        create_trainer(callbacks={"on_finish": print}, **settings(tiny_model))
    assert type(error.value) is UsageError
    assert "on_finish" in str(error.value) and "on_completed" in str(error.value)
    assert not (arkor_home() / "local").exists(), "no plane was started, no job submitted"


def test_run_trainer_finds_the_arkor_export_of_a_module(
    tiny_model: Path, data: Path, project: Path
) -> None:
    module = project / "entry.py"
    module.write_text(
        "from arkor.sdk import create_arkor, create_trainer\n"
        f"arkor = create_arkor(trainer=create_trainer(**{settings(tiny_model, max_steps=2)!r}))\n",
        encoding="utf-8",
    )
    result = run_trainer(module)
    assert result.status == "completed"
    assert is_arkor(create_arkor(trainer=create_trainer(**settings(tiny_model))))
