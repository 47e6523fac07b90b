"""The evaluation at the end of a real run (and at its checkpoints), and again later through
the inference worker's ``/v1/eval``: the same rows, the same numbers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.cloud import EvalCompleted, JobConfig
from arkor.engine import ListSink, TrainingOutcome, TrainingRun, train
from arkor.engine._eval import HELD_OUT_PATH, read_held_out
from arkor.engine._infer import InferenceEngine
from arkor.engine._inference_server import _Server
from arkor.evals import hold_out, row_sha256, rows_digest

SEED = 3
EVAL = {
    "held_out": 0.25,
    "rows": 6,
    "metrics": ["exact_match", "contains", "rouge_l"],
    "max_new_tokens": 6,
    "batch_size": 4,
}


def rows(count: int = 24) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"question {number}"},
                {"role": "assistant", "content": f"answer {number}"},
            ]
        }
        for number in range(count)
    ]


def run(
    tiny_model: Path,
    tmp_path: Path,
    data: list[dict[str, Any]],
    eval_block: dict[str, Any],
    **overrides: Any,
) -> tuple[TrainingOutcome, ListSink, Path]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")
    config = JobConfig.model_validate(
        {
            "model": str(tiny_model),
            "dataset_source": {"type": "file", "upload_id": "upload-1"},
            "max_steps": 6,
            "learning_rate": 5e-3,
            "batch_size": 4,
            "logging_steps": 3,
            "save_steps": 3,
            "lora_r": 4,
            "max_length": 64,
            "seed": SEED,
            "eval": eval_block,
            **overrides,
        }
    )
    sink = ListSink()
    output = tmp_path / "job"
    outcome = train(
        TrainingRun(job_id="job-1", config=config, output_dir=output, sink=sink, dataset_file=path)
    )
    return outcome, sink, output


def evals(sink: ListSink) -> list[EvalCompleted]:
    return [event for event in sink.events if isinstance(event, EvalCompleted)]


def test_a_run_ends_with_base_and_adapter_metrics_on_its_held_out_rows(
    tiny_model: Path, tmp_path: Path, inference_server: str
) -> None:
    data = rows()
    held = hold_out(24, 0.25, SEED)[1]
    data[held[-1]] = {"messages": [{"role": "user", "content": "no answer to compare with"}]}
    outcome, sink, output = run(tiny_model, tmp_path, data, EVAL)

    assert outcome.status == "completed", outcome.error
    types = sink.types()
    assert types[-2:] == ["eval.completed", "training.completed"]
    started = sink.events[0]
    assert started.metadata is not None and started.metadata["heldOutRows"] == 6
    assert started.metadata["trainRows"] == 18
    (event,) = evals(sink)
    assert (event.final, event.step, event.checkpoint, event.error) == (True, 6, None, None)
    assert (event.rows, event.held_out_rows, len(event.samples)) == (5, 6, 5)
    assert event.held_out_sha256 == rows_digest(row_sha256(data[index]) for index in held)
    assert [score.name for score in event.metrics] == EVAL["metrics"]
    for score in event.metrics:
        assert score.count == 5
        assert score.base is not None and score.adapter is not None
    assert event.warnings[0].startswith("1 of the 6 held-out rows have no answer")
    assert "Only 5 held-out rows" in event.warnings[1]
    assert [sample.number for sample in event.samples] == [index + 1 for index in held[:-1]]
    for sample in event.samples:
        assert sample.reference == f"answer {sample.number - 1}"
        assert sample.base is not None
        assert set(sample.scores) == set(EVAL["metrics"])
    completed = sink.events[-1]
    assert HELD_OUT_PATH in {artifact.path for artifact in completed.artifacts or []}
    written = read_held_out(output / HELD_OUT_PATH)
    assert [item.sha256 for item in written] == [row_sha256(data[index]) for index in held]

    # the same rows answered again by the inference worker give the same event
    again = ask_eval(
        inference_server,
        {
            "baseModel": str(tiny_model),
            "baseRevision": None,
            "adapterPath": str(output / "adapter"),
            "heldOutPath": str(output / HELD_OUT_PATH),
            "spec": JobConfig.model_validate(
                {"model": "m", "dataset_source": {"type": "file", "upload_id": "u"}, "eval": EVAL}
            ).eval.to_wire(),  # type: ignore[union-attr]
            "rows": None,
            "checkpoint": None,
            "step": 6,
            "seed": SEED,
            "jobId": "job-1",
        },
    )
    progress = [line for line in again if line["type"] == "progress"]
    assert progress[-1] == {"type": "progress", "done": 10, "total": 10}
    assert again[-1]["type"] == "event"
    requested = EvalCompleted.model_validate(again[-1]["event"])
    assert requested.requested and requested.step == 6
    assert requested.metrics == event.metrics
    assert (requested.held_out_rows, requested.held_out_sha256) == (6, event.held_out_sha256)
    assert requested.warnings == event.warnings
    assert [(s.base, s.adapter) for s in requested.samples] == [
        (s.base, s.adapter) for s in event.samples
    ]


def test_each_checkpoint_is_evaluated_after_it_is_saved(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, _ = run(
        tiny_model, tmp_path, rows(), {**EVAL, "at_checkpoints": True, "rows": 4}
    )

    assert outcome.status == "completed", outcome.error
    types = sink.types()
    saved = [i for i, kind in enumerate(types) if kind == "checkpoint.saved"]
    assert [types[i + 1] for i in saved] == ["eval.completed", "eval.completed"]
    events = evals(sink)
    assert [(e.checkpoint, e.step, e.final) for e in events] == [
        (3, 3, False),
        (6, 6, False),
        (None, 6, True),
    ]
    assert all(e.error is None and e.rows == 4 for e in events)
    # the base answers once for the run: every event carries the same base answers
    assert len({tuple(s.base for s in e.samples) for e in events}) == 1
    # evaluating mid-run leaves training as it was: the same losses as without
    _, plain, _ = run(tiny_model, tmp_path / "plain", rows(), {**EVAL, "rows": 4})
    assert losses(plain) == losses(sink)


def losses(sink: ListSink) -> list[float | None]:
    return [event.loss for event in sink.events if event.type == "training.log"]


def test_an_eval_that_fails_is_reported_and_the_run_completes(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = rows()
    held = hold_out(24, 0.25, SEED)[1]
    # longer than the tiny model's 512 positions: training truncates it, the eval cannot ask it
    data[held[0]]["messages"][0]["content"] = "question " + "red green blue " * 400

    outcome, sink, _ = run(tiny_model, tmp_path, data, EVAL)

    assert outcome.status == "completed", outcome.error
    assert sink.types()[-2:] == ["eval.completed", "training.completed"]
    (event,) = evals(sink)
    assert event.error is not None and "reads at most 512" in event.error
    assert event.metrics == [] and event.final


def test_a_cancel_during_the_eval_stops_it_and_the_run_completes(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows()), encoding="utf-8")
    output, stop, sink = tmp_path / "job", threading.Event(), ListSink()

    def cancel_once_the_eval_begins() -> None:
        # the held-out rows are written as training ends, just before the eval starts
        while not (output / HELD_OUT_PATH).exists():
            time.sleep(0.001)
        stop.set()

    watcher = threading.Thread(target=cancel_once_the_eval_begins, daemon=True)
    watcher.start()
    config = JobConfig.model_validate(
        {
            "model": str(tiny_model),
            "dataset_source": {"type": "file", "upload_id": "upload-1"},
            "max_steps": 3,
            "save_steps": 100,
            "max_length": 64,
            "eval": {**EVAL, "batch_size": 1, "max_new_tokens": 32},
        }
    )
    run = TrainingRun("job-1", config, output, sink, stop=stop, dataset_file=path)
    outcome = train(run)
    watcher.join(timeout=5)

    assert stop.is_set()
    assert (outcome.status, outcome.step) == ("completed", 3)
    assert "eval.completed" not in sink.types()
    assert sink.types()[-1] == "training.completed"


@pytest.fixture(scope="module")
def inference_server() -> Iterator[str]:
    server = _Server(InferenceEngine(), "secret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def ask_eval(url: str, body: dict[str, Any], secret: str = "secret") -> list[dict[str, Any]]:
    """POST ``/v1/eval``; the NDJSON lines, or the refusal with its status."""
    response = httpx.post(
        f"{url}/v1/eval",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=120,
    )
    if response.status_code != 200:
        return [{"status": response.status_code, **response.json()}]
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_the_eval_route_refuses_a_wrong_secret_and_an_unusable_body(
    tmp_path: Path, inference_server: str
) -> None:
    assert ask_eval(inference_server, {}, secret="wrong")[0]["status"] == 401
    body = {"baseModel": "m", "heldOutPath": str(tmp_path / "missing.jsonl"), "spec": {}}
    (refused,) = ask_eval(inference_server, body)
    assert refused["status"] == 422 and "The eval cannot run" in refused["error"]
