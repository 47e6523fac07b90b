"""`arkor eval` and the evals in `arkor jobs show`, against a real plane, without a model.

The jobs run ``tests/server/eval_worker.py``: the worker protocol and an ``eval.completed``
event, no training. The eval that runs the engine is in ``test_eval_end_to_end.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import FileDatasetSource, JobConfig, JobCreate
from arkor.sdk import open_session
from tests.cli.test_cli import heavy_modules_after
from tests.server.test_eval_plane import DATA, EVAL_WORKER
from tests.utils.cli import CliRunner
from tests.utils.plane import running_plane
from tests.utils.requires import need

need("fastapi", "these tests run the real plane")


@pytest.fixture
def plane_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A plane whose jobs run the eval worker; this test's folder talks to it."""
    with running_plane(tmp_path / "plane-home", worker_command=EVAL_WORKER) as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        yield plane.url


def finished_job(name: str, **config: Any) -> str:
    """Submit a job (as `arkor start` would, in this folder's project) and wait for its end."""
    session = open_session()
    try:
        upload = session.client.upload(session.scope, DATA, filename="train.jsonl")
        job = session.client.create_job(
            session.scope,
            JobCreate(
                name=name,
                config=JobConfig(
                    model="tiny",
                    dataset_source=FileDatasetSource(upload_id=upload.id),
                    **config,
                ),
            ),
        )
        for _ in range(600):
            current = session.client.get_job(session.scope, job.id, include_events=False).job
            if current.status in ("completed", "failed", "cancelled"):
                assert current.status == "completed", current.error
                return job.id
            time.sleep(0.05)
        raise AssertionError(f"job {job.id} did not finish")
    finally:
        session.close()


EVAL = {"held_out": 0.1, "rows": 8, "metrics": ["exact_match"]}


def test_help_imports_nothing_heavy(project: Path) -> None:
    assert heavy_modules_after(["eval", "--help"], project) == []


def test_jobs_show_prints_the_newest_eval_and_json_carries_every_one(
    plane_url: str, cli: CliRunner
) -> None:
    job_id = finished_job("eval:30", eval=EVAL)
    shown = cli("jobs", "show", job_id)
    assert shown.exit_code == 0, shown.stderr
    table = shown.stdout[shown.stdout.index("Eval of the adapter") :].splitlines()
    assert table[0] == "Eval of the adapter at step 4 on 30 held-out rows:"
    assert table[1].split() == ["metric", "base", "adapter", "change"]
    assert table[2].split() == ["exact_match", "0.0%", "100.0%", "+100.0", "pts"]

    listed = cli("jobs", "show", job_id, "--json")
    assert listed.exit_code == 0, listed.stderr
    (evaluated,) = json.loads(listed.stdout)["evals"]
    assert evaluated["type"] == "eval.completed" and evaluated["final"] is True
    assert len(evaluated["samples"]) == 30 and evaluated["samples"][0]["adapter"] == "x" * 1000

    bare = finished_job("eval:1")
    assert json.loads(cli("jobs", "show", bare, "--json").stdout)["evals"] == []
    assert "Eval of" not in cli("jobs", "show", bare).stdout


def test_eval_refusals_and_their_exit_codes(plane_url: str, cli: CliRunner) -> None:
    bare = finished_job("eval:1")
    refused = cli("eval", bare)
    assert refused.exit_code == 1
    assert "its config has no eval block" in refused.stderr and refused.stdout == ""

    job_id = finished_job("eval:2", eval=EVAL)
    unknown = cli("eval", "job_nope")
    assert unknown.exit_code == 2
    assert "has no job `job_nope`" in unknown.stderr

    checkpoint = cli("eval", job_id, "--checkpoint", "7")
    assert checkpoint.exit_code == 2
    assert f"Job {job_id} has no checkpoint at step 7: its checkpoints are at steps 2" in (
        checkpoint.stderr
    )
    for rows in ("0", "1001", "many"):
        assert cli("eval", job_id, "--rows", rows).exit_code == 2
