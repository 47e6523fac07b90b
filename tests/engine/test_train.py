"""Real LoRA training of a tiny model: events, checkpoints, adapters, eval, dry run, cancel, seeds."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import JobConfig, JobEvent
from arkor.engine import (
    ADAPTER_DIRNAME,
    CHECKPOINTS_DIRNAME,
    ListSink,
    TrainingOutcome,
    TrainingRun,
    train,
)
from tests.engine.conftest import BlobServer

QUESTIONS = {
    "what color is the sky?": "blue",
    "what color is grass?": "green",
    "what is one plus one?": "two",
    "say hello": "hello world",
    "capital of france?": "paris",
    "capital of spain?": "madrid",
    "count to three": "one two three",
    "greet me": "good morning",
}


def toy_rows(repeat: int = 4) -> list[dict[str, Any]]:
    """A task the tiny model can learn: fixed answers to fixed questions."""
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for _ in range(repeat)
        for q, a in QUESTIONS.items()
    ]


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def job_config(tiny_model: Path, **overrides: Any) -> JobConfig:
    settings: dict[str, Any] = {
        "model": str(tiny_model),
        "dataset_source": {"type": "file", "upload_id": "upload-1"},
        "max_steps": 12,
        "learning_rate": 5e-3,
        "batch_size": 4,
        "logging_steps": 2,
        "save_steps": 6,
        "lora_r": 8,
        "lora_alpha": 16,
        "max_length": 64,
        "seed": 3,
    }
    return JobConfig.model_validate({**settings, **overrides})


def run_job(
    tiny_model: Path,
    tmp_path: Path,
    *,
    sink: ListSink | None = None,
    rows: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> tuple[TrainingOutcome, ListSink, Path]:
    sink = sink or ListSink()
    output = tmp_path / "job"
    data = write_rows(tmp_path, rows if rows is not None else toy_rows())
    run = TrainingRun(
        job_id="job-1",
        config=job_config(tiny_model, **overrides),
        output_dir=output,
        sink=sink,
        dataset_file=data,
    )
    return train(run), sink, output


def logs(sink: ListSink) -> list[JobEvent]:
    return [event for event in sink.events if event.type == "training.log"]


def test_loss_falls_on_a_learnable_task(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, _ = run_job(
        tiny_model, tmp_path, max_steps=40, logging_steps=5, save_steps=100, learning_rate=2e-2
    )
    assert outcome.status == "completed", outcome.error
    losses = [event.loss for event in logs(sink) if event.loss is not None]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]


def test_events_arrive_in_order_with_the_right_steps(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, output = run_job(tiny_model, tmp_path)
    types = sink.types()
    assert types[0] == "training.started"
    assert types[-1] == "training.completed"
    assert types.count("training.completed") == 1
    assert [event.step for event in logs(sink)] == [2, 4, 6, 8, 10, 12]
    checkpoints = [event for event in sink.events if event.type == "checkpoint.saved"]
    assert [event.step for event in checkpoints] == [6, 12]
    for event in checkpoints:
        paths = {artifact.path for artifact in event.artifacts or []}
        assert f"{CHECKPOINTS_DIRNAME}/checkpoint-{event.step}/adapter_model.safetensors" in paths
        for artifact in event.artifacts or []:
            assert (output / artifact.path).stat().st_size == artifact.size
    started = sink.events[0]
    assert started.metadata is not None and started.metadata["trainRows"] == 32
    completed = sink.events[-1]
    assert completed.metrics is not None and completed.metrics["step"] == 12
    assert completed.metrics["tokensSeen"] > 0
    assert {a.path for a in completed.artifacts or []} >= {
        f"{ADAPTER_DIRNAME}/adapter_model.safetensors"
    }
    assert all(event.job_id == "job-1" for event in sink.events)
    assert outcome.adapter_dir == output / ADAPTER_DIRNAME


def test_checkpoints_and_final_adapter_reload_in_peft_and_generate(
    tiny_model: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    outcome, _, output = run_job(tiny_model, tmp_path)
    for folder in (output / CHECKPOINTS_DIRNAME / "checkpoint-6", output / ADAPTER_DIRNAME):
        assert (folder / "adapter_config.json").is_file()
        assert (folder / "tokenizer_config.json").is_file(), (
            "the tokenizer ships beside the adapter"
        )
        tokenizer = AutoTokenizer.from_pretrained(folder)
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        model = PeftModel.from_pretrained(base, folder)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": "capital of france?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
        assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert outcome.status == "completed"


def test_eval_loss_is_reported_on_eval_steps(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, _ = run_job(tiny_model, tmp_path, dataset_split=0.25, eval_steps=4)
    assert outcome.status == "completed", outcome.error
    eval_steps = [event.step for event in logs(sink) if event.eval_loss is not None]
    assert eval_steps == [4, 8, 12]
    assert sink.events[0].metadata["evalRows"] == 8
    assert outcome.metrics["evalLoss"] > 0


def test_dry_run_caps_rows_and_steps(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, output = run_job(
        tiny_model, tmp_path, rows=toy_rows(repeat=10), dry_run=True, max_steps=100
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.step == 5
    assert sink.events[0].metadata["trainRows"] <= 32
    assert [event.step for event in sink.events if event.type == "checkpoint.saved"] == [5]
    assert (output / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file()


class CancelAt(ListSink):
    """Asks the run to stop once a log for ``step`` arrives, as a cancel request would."""

    def __init__(self, step: int, stop: threading.Event) -> None:
        super().__init__()
        self.step, self.stop = step, stop

    def emit(self, event: JobEvent) -> None:
        super().emit(event)
        if event.type == "training.log" and event.step >= self.step:
            self.stop.set()


def test_cancel_stops_within_one_step_and_keeps_the_last_checkpoint(
    tiny_model: Path, tmp_path: Path
) -> None:
    stop = threading.Event()
    sink = CancelAt(5, stop)
    data = write_rows(tmp_path, toy_rows())
    run = TrainingRun(
        job_id="job-1",
        config=job_config(tiny_model, max_steps=200, logging_steps=1, save_steps=2),
        output_dir=tmp_path / "job",
        sink=sink,
        stop=stop,
        dataset_file=data,
    )
    outcome = train(run)
    assert outcome.status == "cancelled"
    assert outcome.step == 6, "the cancel arrives after step 5; the step then in flight is the last"
    assert sink.types()[-1] == "training.cancelled"
    assert sink.events[-1].step == 6
    assert "training.completed" not in sink.types()
    assert (
        tmp_path / "job" / CHECKPOINTS_DIRNAME / "checkpoint-4" / "adapter_model.safetensors"
    ).is_file()
    assert not (tmp_path / "job" / ADAPTER_DIRNAME).exists()


def test_a_stop_before_training_cancels_at_step_zero(tiny_model: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path, toy_rows())
    run = TrainingRun(
        job_id="j",
        config=job_config(tiny_model),
        output_dir=tmp_path / "job",
        sink=ListSink(),
        dataset_file=data,
    )
    run.stop.set()
    outcome = train(run)
    assert (outcome.status, outcome.step) == ("cancelled", 0)


def test_the_same_seed_gives_the_same_loss_curve(tiny_model: Path, tmp_path: Path) -> None:
    curves = []
    for attempt in ("a", "b"):
        folder = tmp_path / attempt
        folder.mkdir()
        _, sink, _ = run_job(tiny_model, folder)
        curves.append([event.loss for event in logs(sink)])
    assert curves[0] == pytest.approx(curves[1], rel=1e-6)
    other_folder = tmp_path / "c"
    other_folder.mkdir()
    _, other, _ = run_job(tiny_model, other_folder, seed=4)
    assert [event.loss for event in logs(other)] != pytest.approx(curves[0], rel=1e-6)


def test_resume_continues_from_the_last_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    data = write_rows(tmp_path, toy_rows())
    config = job_config(tiny_model, max_steps=12, logging_steps=1, save_steps=4)
    first = train(TrainingRun("j", config, tmp_path / "job", CancelAt(5, stop), stop, data))
    assert first.status == "cancelled"
    sink = ListSink()
    second = train(TrainingRun("j", config, tmp_path / "job", sink, dataset_file=data, resume=True))
    assert second.status == "completed", second.error
    assert next(event.step for event in logs(sink)) == 5, "picks up after checkpoint-4"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "/nonexistent/model-folder"}, "Cannot load the model"),
        ({"load_in_4bit": True}, "bitsandbytes"),
    ],
)
def test_failures_end_with_a_clear_training_failed(
    tiny_model: Path, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    outcome, sink, _ = run_job(tiny_model, tmp_path, **overrides)
    assert outcome.status == "failed"
    assert sink.types() == ["training.failed"]
    assert message in (outcome.error or "")
    assert "Traceback" not in (outcome.error or "")


@pytest.mark.parametrize("source_type", ["file", "blob", "huggingface"])
def test_a_real_adapter_trains_from_every_dataset_source(
    tiny_model: Path, tmp_path: Path, source_type: str, blob_server: BlobServer
) -> None:
    """The same training code runs on a local file, a downloaded blob and a HF dataset."""
    rows = "".join(json.dumps(row) + "\n" for row in toy_rows())
    dataset_file: Path | None = None
    if source_type == "file":
        dataset_file = write_rows(tmp_path, toy_rows())
        source: dict[str, Any] = {"type": "file", "upload_id": "upload-1"}
    elif source_type == "blob":
        url = blob_server.add("/private/train.jsonl", rows)
        source = {"type": "blob", "url": url, "token": blob_server.token}
    else:
        hub_folder = tmp_path / "hub-dataset"
        (hub_folder / "data").mkdir(parents=True)
        (hub_folder / "data" / "train.jsonl").write_text(rows, encoding="utf-8")
        source = {"type": "huggingface", "name": str(hub_folder), "split": "train"}
    sink = ListSink()
    outcome = train(
        TrainingRun(
            job_id="j",
            config=job_config(tiny_model, dataset_source=source, max_steps=4),
            output_dir=tmp_path / "job",
            sink=sink,
            dataset_file=dataset_file,
        )
    )
    assert outcome.status == "completed", outcome.error
    assert sink.events[0].metadata is not None and sink.events[0].metadata["trainRows"] == 32
    assert (tmp_path / "job" / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file()
