"""Data-parallel training of the tiny model on the CPU: two processes over gloo.

Two processes with batch 2 take the same rows per step as one with batch 4, so they must
log the same losses; rank 0 alone reports and saves; a stop ends every rank; a rank that
dies fails the run with its reason; nothing is left running.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from arkor.cloud import JobEvent
from arkor.engine import ADAPTER_DIRNAME, ListSink, TrainingOutcome, TrainingRun, train
from tests.engine.test_train import CancelAt, job_config, logs, toy_rows, write_rows
from tests.utils.requires import need

pytestmark = pytest.mark.slow

RANK_ENVIRONMENT = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""Rank 0's variables while it trains; the calling process has its own back afterwards."""


def rank_processes() -> list[psutil.Process]:
    """The data-parallel ranks this test process has started and that still run."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "arkor.engine._rank" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@dataclass
class Trained:
    outcome: TrainingOutcome
    sink: ListSink
    output: Path


def run_job(
    tiny_model: Path,
    folder: Path,
    *,
    processes: int | None,
    sink: ListSink | None = None,
    stop: threading.Event | None = None,
    resume: bool = False,
    **overrides: Any,
) -> Trained:
    folder.mkdir(parents=True, exist_ok=True)
    sink = sink or ListSink()
    resources = {"resources": {"processes": processes}} if processes is not None else {}
    run = TrainingRun(
        job_id="job-dp",
        config=job_config(tiny_model, **resources, **overrides),
        output_dir=folder / "job",
        sink=sink,
        stop=stop or threading.Event(),
        dataset_file=write_rows(folder, toy_rows()),
        resume=resume,
    )
    environment = {name: os.environ.get(name) for name in RANK_ENVIRONMENT}
    outcome = train(run)
    assert rank_processes() == [], "every rank has exited when train() returns"
    assert {name: os.environ.get(name) for name in RANK_ENVIRONMENT} == environment
    return Trained(outcome, sink, folder / "job")


SAME_STEPS = {
    "max_steps": 4,
    "logging_steps": 1,
    "save_steps": 2,
    "dataset_split": 0.25,
    "eval_steps": 4,
    "eval": {
        "held_out": 0.25,
        "rows": 4,
        "metrics": ["exact_match"],
        "max_new_tokens": 4,
        "at_checkpoints": True,
    },
}


@pytest.fixture(scope="module", autouse=True)
def on_the_cpu() -> Iterator[None]:
    """Two gloo ranks on the CPU, also on a machine with one GPU (two would need two)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARKOR_DEVICE", "cpu")
        yield


@pytest.fixture(scope="module")
def one_and_two(
    on_the_cpu: None, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Trained, Trained]:
    """The same job on one process with batch 4 and on two with batch 2 each."""
    folder = tmp_path_factory.mktemp("data-parallel")
    one = run_job(tiny_model, folder / "one", processes=None, batch_size=4, **SAME_STEPS)
    two = run_job(tiny_model, folder / "two", processes=2, batch_size=2, **SAME_STEPS)
    for trained in (one, two):
        assert trained.outcome.status == "completed", trained.outcome.error
    return one, two


def test_two_processes_log_the_losses_of_one_with_the_same_global_batch(
    one_and_two: tuple[Trained, Trained],
) -> None:
    one, two = one_and_two
    losses = [[event.loss for event in logs(t.sink) if event.loss is not None] for t in (one, two)]
    assert len(losses[0]) == len(losses[1]) == 4
    assert losses[1] == pytest.approx(losses[0], rel=0.02)
    evals = [
        [event.eval_loss for event in logs(t.sink) if event.eval_loss is not None]
        for t in (one, two)
    ]
    assert len(evals[0]) == len(evals[1]) == 1
    assert evals[1] == pytest.approx(evals[0], rel=0.02)


def test_rank_zero_alone_reports_and_saves_the_adapter(
    one_and_two: tuple[Trained, Trained],
) -> None:
    _, two = one_and_two
    types = two.sink.types()
    assert types.count("training.started") == 1
    assert types.count("checkpoint.saved") == 2
    assert types.count("training.completed") == 1
    assert types[-2:] == ["eval.completed", "training.completed"]
    evals = [event for event in two.sink.events if event.type == "eval.completed"]
    assert [(event.checkpoint, event.error) for event in evals] == [
        (2, None),
        (4, None),
        (None, None),
    ]
    assert (two.output / "eval" / "held-out.jsonl").is_file()
    assert [event.step for event in logs(two.sink) if event.loss is not None] == [1, 2, 3, 4]
    started = two.sink.events[0].metadata or {}
    assert started["processes"] == 2
    assert started["devices"] == ["cpu", "cpu"]
    assert (two.output / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file()
    assert (two.output / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()


def test_a_cancel_stops_every_rank_and_a_resume_continues(tiny_model: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    settings = {"max_steps": 8, "logging_steps": 1, "save_steps": 4, "batch_size": 2}
    first = run_job(
        tiny_model, tmp_path, processes=2, sink=CancelAt(5, stop), stop=stop, **settings
    )
    assert first.outcome.status == "cancelled", first.outcome.error
    assert first.outcome.step == 6, "the cancel comes after step 5; every rank ends step 6"
    assert first.sink.types()[-1] == "training.cancelled"
    second = run_job(tiny_model, tmp_path, processes=2, resume=True, **settings)
    assert second.outcome.status == "completed", second.outcome.error
    assert next(event.step for event in logs(second.sink)) == 5, "picks up after checkpoint-4"


class KillRankAt(ListSink):
    """Kills rank 1 outright once a log for ``step`` arrives, as an out-of-memory kill would."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def emit(self, event: JobEvent) -> None:
        super().emit(event)
        if event.type == "training.log" and event.step == self.step:
            for process in rank_processes():
                process.kill()  # not reaped here: the run must see how its rank ended


def test_a_rank_that_dies_fails_the_run_with_its_reason(tiny_model: Path, tmp_path: Path) -> None:
    trained = run_job(
        tiny_model,
        tmp_path,
        processes=2,
        sink=KillRankAt(2),
        max_steps=50,
        logging_steps=1,
        save_steps=100,
        batch_size=2,
    )
    assert trained.outcome.status == "failed"
    assert trained.sink.types()[-1] == "training.failed"
    assert "Data-parallel rank 1 of 2 was killed by SIGKILL" in (trained.outcome.error or "")


def test_a_run_that_cannot_start_fails_with_rank_zeros_reason(
    tiny_model: Path, tmp_path: Path
) -> None:
    trained = run_job(tiny_model, tmp_path, processes=2, model="/nonexistent/model-folder")
    assert trained.outcome.status == "failed"
    assert trained.sink.types() == ["training.failed"]
    assert (trained.outcome.error or "").startswith("Cannot load the model")


def test_more_processes_than_gpus_is_refused(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("ARKOR_DEVICE", "cuda")
    gpus = torch.cuda.device_count()
    trained = run_job(tiny_model, tmp_path, processes=gpus + 1)
    assert trained.outcome.status == "failed"
    assert trained.sink.types() == ["training.failed"]
    assert f"asks for {gpus + 1} data-parallel processes, but this machine has {gpus} GPU" in (
        trained.outcome.error or ""
    )


def test_a_worker_trains_on_two_processes_and_the_plane_sees_one_run(
    tiny_model: Path, tmp_path: Path
) -> None:
    need("fastapi", "this test runs the real plane")
    from tests.utils.plane import (
        running_plane,
        sign_up,
        tiny_job,
        toy_dataset,
        upload,
        wait_for_status,
    )

    with running_plane(tmp_path / "home") as plane:
        caller = sign_up(plane.url)
        body = tiny_job(
            tiny_model, upload(caller, toy_dataset()), batchSize=2, resources={"processes": 2}
        )
        created = caller.http.post("/v1/jobs", params=caller.scope, json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job"]["id"]
        job = wait_for_status(caller, job_id, {"completed", "failed"}, timeout=180)
        events = caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
        caller.close()
        assert job["status"] == "completed", events[-1]
        assert rank_processes() == []

    types = [event["type"] for event in events]
    assert types.count("training.started") == 1
    assert types[-1] == "training.completed"
    assert events[0]["metadata"]["processes"] == 2
    steps = [event["step"] for event in events if event["type"] == "training.log"]
    assert steps == [1, 2, 3, 4]
    adapter = plane.settings.artifacts_dir / job_id / ADAPTER_DIRNAME
    assert (adapter / "adapter_model.safetensors").is_file()


def test_a_cancel_on_the_plane_ends_a_two_process_run_with_no_rank_left(
    tiny_model: Path, tmp_path: Path
) -> None:
    need("fastapi", "this test runs the real plane")
    from tests.utils.plane import (
        running_plane,
        sign_up,
        tiny_job,
        toy_dataset,
        upload,
        wait_for_status,
    )

    with running_plane(tmp_path / "home") as plane:
        caller = sign_up(plane.url)
        body = tiny_job(
            tiny_model,
            upload(caller, toy_dataset()),
            batchSize=2,
            maxSteps=100_000,
            saveSteps=100_000,
            resources={"processes": 2},
        )
        job_id = caller.http.post("/v1/jobs", params=caller.scope, json=body).json()["job"]["id"]
        deadline = time.monotonic() + 120
        while not any(
            event["type"] == "training.log"
            for event in caller.http.get(f"/v1/jobs/{job_id}", params=caller.scope).json()["events"]
        ):
            assert time.monotonic() < deadline, "no step was logged"
            time.sleep(0.2)
        cancel = caller.http.post(f"/v1/jobs/{job_id}/cancel", params=caller.scope)
        assert cancel.status_code == 202
        wait_for_status(caller, job_id, {"cancelled"}, timeout=60)
        caller.close()
        deadline = time.monotonic() + 30  # the worker reports, then returns from train()
        while rank_processes():
            assert time.monotonic() < deadline, "a rank outlived the cancelled run"
            time.sleep(0.2)
