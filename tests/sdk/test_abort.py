"""Stopping a wait from elsewhere: the abort handle and a cancelled task end it at once.

The plane's jobs here run the fake worker (``sleep``: starts, then sends nothing), and it
pings rarely, so only cutting the connection can end a wait in time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.cloud import (
    HuggingfaceDatasetSource,
    JobConfig,
)
from arkor.sdk import AbortHandle, Session, Trainer, WaitAborted
from arkor.server import RunningPlane
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import QUIET, running_plane, signed_in_project


@pytest.fixture(scope="module")
def quiet_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    home = tmp_path_factory.mktemp("quiet-home")
    with running_plane(home, worker_command=FAKE_WORKER, ping_interval=QUIET, max_jobs=4) as plane:
        yield plane


@pytest.fixture
def session(quiet_plane: RunningPlane) -> Iterator[Session]:
    with signed_in_project(quiet_plane.url) as (client, scope):
        yield Session(client, scope, "local", quiet_plane.url)


def sleeping_trainer(session: Session, tmp_path: Path, started: threading.Event) -> Trainer:
    """A trainer of a job that starts and then sends nothing; ``started`` is set on_started."""
    config = JobConfig(model="tiny", dataset_source=HuggingfaceDatasetSource(name="-"))
    trainer = Trainer(
        "sleep", config, callbacks={"on_started": lambda ctx: started.set()}, cwd=tmp_path
    )
    trainer.session = session
    return trainer


def test_abort_from_another_thread_ends_a_quiet_wait(session: Session, tmp_path: Path) -> None:
    started = threading.Event()
    trainer = sleeping_trainer(session, tmp_path, started)
    abort = AbortHandle()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            trainer.wait(abort=abort)
        except BaseException as error:
            outcome.append(error)

    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    assert started.wait(30), "the job never started"
    abort.abort()
    waiting.join(QUIET / 4)
    assert not waiting.is_alive(), "abort() did not end the wait"
    assert len(outcome) == 1 and isinstance(outcome[0], WaitAborted)
    assert trainer.job is not None
    job = session.client.get_job(session.scope, trainer.job.id, include_events=False).job
    assert job.status == "running", "aborting a wait must not cancel the job"
    trainer.cancel()


def test_cancelling_wait_async_stops_reading(session: Session, tmp_path: Path) -> None:
    """The task ends, and so does the thread reading for it (``asyncio.run`` joins it)."""
    started = threading.Event()
    trainer = sleeping_trainer(session, tmp_path, started)
    abort = AbortHandle()
    outcome: list[BaseException] = []

    async def scenario() -> None:
        task = asyncio.create_task(trainer.wait_async(abort=abort))
        while not started.is_set():
            await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as error:
            outcome.append(error)

    running = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    running.start()
    running.join(QUIET / 4)
    assert not running.is_alive(), "a thread still reads the stream of the cancelled wait"
    assert len(outcome) == 1
    assert abort.aborted, "the handle given to the cancelled wait says it was stopped"
    trainer.cancel()
