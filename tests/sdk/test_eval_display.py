"""What ``arkor start`` shows around an eval: that the run is evaluating, and the tables."""

from __future__ import annotations

import io

from arkor.cli._progress import RunDisplay
from arkor.cloud import (
    CheckpointSaved,
    EvalCompleted,
    EvalScore,
    EvalSpec,
    JobEvent,
    TrainingCompleted,
    TrainingLog,
    TrainingStarted,
)

JOB = "job_1"
SCORE = [EvalScore(name="exact_match", base=0.25, adapter=0.5, count=4)]


def shown(spec: EvalSpec | None, events: list[JobEvent]) -> list[str]:
    stream = io.StringIO()
    display = RunDisplay(stream=stream, evaluation=spec, final_eval_later=True)
    for event in events:
        display.event(event)
    return stream.getvalue().splitlines()


def run_events(*middle: JobEvent, rows: int = 4) -> list[JobEvent]:
    return [
        TrainingStarted(job_id=JOB, metadata={"maxSteps": 6, "heldOutRows": 4}),
        TrainingLog(job_id=JOB, step=3, loss=1.0),
        TrainingLog(job_id=JOB, step=6, loss=0.5),
        *middle,
        EvalCompleted(job_id=JOB, step=6, final=True, rows=rows, metrics=SCORE, seconds=2.0),
        TrainingCompleted(job_id=JOB),
    ]


def test_the_last_step_says_the_adapter_is_being_evaluated() -> None:
    lines = shown(EvalSpec(rows=32), run_events())
    after_training = lines[lines.index("step 6  loss 0.5000") + 1 :]
    assert after_training == [
        "evaluating the adapter against its base on 4 held-out rows…",
        "evaluated on 4 held-out rows in 2.0 s",
        "training completed",
    ]


def test_checkpoint_evals_are_shown_as_they_come_and_the_adapter_after_the_last() -> None:
    spec = EvalSpec(rows=2, at_checkpoints=True)
    lines = shown(
        spec,
        run_events(
            CheckpointSaved(job_id=JOB, step=6),
            EvalCompleted(job_id=JOB, step=6, checkpoint=6, rows=2, metrics=SCORE),
            rows=2,
        ),
    )
    after_training = lines[lines.index("step 6  loss 0.5000") + 1 :]
    assert after_training[:3] == [
        "checkpoint saved at step 6",
        "evaluating the checkpoint on 2 held-out rows…",
        "Eval of the checkpoint at step 6 on 2 held-out rows:",
    ]
    assert after_training[-3:] == [
        "evaluating the adapter against its base on 2 held-out rows…",
        "evaluated on 2 held-out rows in 2.0 s",
        "training completed",
    ]


def test_without_an_eval_block_nothing_is_said() -> None:
    lines = shown(None, [*run_events()[:3], TrainingCompleted(job_id=JOB)])
    assert not any("evaluat" in line for line in lines)
