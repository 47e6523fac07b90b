"""The Ray executor's settings, what it asks Ray for, and what it says while a job waits;
and, on a real database, a job handed to a cluster: queued until its worker calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.cloud import JobConfig
from arkor.errors import UsageError
from arkor.server import _store as store
from arkor.server import load_settings
from arkor.server._db import Database
from arkor.server._ray import Request, pending_reason, request_for
from tests.utils.cli import CliRunner


def test_the_ray_executor_is_chosen_with_its_cluster(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ARKOR_HOME": str(tmp_path),
            "ARKOR_EXECUTOR": "ray",
            "ARKOR_RAY_ADDRESS": "http://head:8265/",
            "ARKOR_RAY_RUNTIME_ENV": '{"pip": ["arkor[local]"]}',
            "ARKOR_RAY_GPUS": "1",
            "ARKOR_RAY_WORKER_COMMAND": "/opt/venv/bin/python -m arkor.engine.worker",
            "ARKOR_RAY_ARTIFACTS": "/mnt/arkor/artifacts/",
        }
    )
    assert (settings.executor, settings.ray_address) == ("ray", "http://head:8265")
    assert settings.ray_runtime_env == {"pip": ["arkor[local]"]}
    assert (settings.ray_cpus, settings.ray_gpus) == (1.0, 1.0)
    assert settings.ray_worker_command[0] == "/opt/venv/bin/python"
    assert settings.ray_artifacts == "/mnt/arkor/artifacts"
    default = load_settings({"ARKOR_HOME": str(tmp_path)})
    assert (default.executor, default.ray_artifacts) == ("local", None)  # uploads over HTTP


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"ARKOR_EXECUTOR": "k8s"}, "must be `local` or `ray`"),
        ({"ARKOR_EXECUTOR": "ray"}, "--ray-address"),
        ({"ARKOR_EXECUTOR": "ray", "RAY_ADDRESS": "x", "ARKOR_RAY_RUNTIME_ENV": "{"}, "JSON"),
        ({"ARKOR_EXECUTOR": "ray", "RAY_ADDRESS": "x", "ARKOR_RAY_RUNTIME_ENV": "[]"}, "object"),
        ({"ARKOR_RAY_GPUS": "-1"}, "at least 0"),
        ({"ARKOR_RAY_ARTIFACTS": "s3://bucket/arkor"}, "absolute path"),
    ],
)
def test_bad_ray_settings_are_usage_errors(variables: dict[str, str], says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("[", r"\[")):
        load_settings(variables)


def test_serve_refuses_the_ray_executor_without_a_cluster(cli: CliRunner) -> None:
    result = cli("serve", "--executor", "ray")
    assert result.exit_code == 2, result.stderr
    assert "--ray-address http://HEAD:8265" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    bogus = cli("serve", "--executor", "slurm")
    assert bogus.exit_code == 2 and "local or ray" in bogus.stderr


def _config(**resources: object) -> JobConfig:
    return JobConfig.model_validate(
        {
            "model": "m",
            "datasetSource": {"type": "file", "uploadId": "u"},
            **({"resources": resources} if resources else {}),
        }
    )


def test_a_job_asks_for_its_resources_or_the_planes_defaults(tmp_path: Path) -> None:
    settings = load_settings({"ARKOR_HOME": str(tmp_path), "ARKOR_RAY_CPUS": "2"})
    assert request_for(_config(), settings) == Request(cpus=2.0, gpus=0.0, memory=None)
    assert request_for(_config(gpus=4, cpus=8, memory="16GiB"), settings) == Request(
        cpus=8.0, gpus=4.0, memory=16 << 30
    )


def test_a_waiting_job_says_whether_any_node_could_ever_run_it() -> None:
    request = Request(cpus=1.0, gpus=4.0, memory=None)
    small = [{"CPU": 2.0, "memory": 8e9}]
    never = pending_reason("http://head:8265", request, small)
    assert "No node of the Ray cluster at http://head:8265 has 1 CPU, 4 GPUs" in never
    assert "2 CPUs, 0 GPUs" in never and "[trainer.resources]" in never
    busy = pending_reason("http://head:8265", request, [{"CPU": 8.0, "GPU": 8.0}])
    assert busy == "Waiting for 1 CPU, 4 GPUs to be free on the Ray cluster at http://head:8265."
    assert pending_reason("http://h", request, None).startswith("Waiting for")


def _queued_job(db: Database) -> str:
    _principal, org = store.create_anonymous_identity(db=db, token_hash="t")
    project = store.create_project(db=db, org_id=org.id, slug="p", name="p")
    assert project is not None
    job, _ = store.create_job(
        db=db,
        project=project,
        name="tiny",
        config=_config().model_dump(by_alias=True, exclude_none=True),
        plane_id="plane",
    )
    return job.id


def test_a_placed_job_stays_queued_until_its_worker_calls(tmp_path: Path) -> None:
    db = Database(tmp_path / "arkor.db")
    try:
        store.beat_plane(db=db, plane_id="plane", pid=1, url="http://x", started_at="now")
        job_id = _queued_job(db)
        claim = {"db": db, "plane_id": "plane", "max_jobs": None, "lease_ttl": 30.0}
        placed = store.claim_next_job(**claim, token_hash="h", executor="ray", place_only=True)
        assert placed is not None and placed.status == "queued" and placed.executor == "ray"
        assert store.claim_next_job(**claim, token_hash="h2") is None  # not handed out twice
        store.set_placement(db=db, job_id=job_id, executor_job_id="arkor-x", queue_reason="wait")
        shown = store.get_job(db=db, job_id=job_id)
        assert shown is not None
        wire = shown.to_wire()
        assert wire.queue_reason == "wait" and wire.placement is not None
        assert wire.placement.executor_job_id == "arkor-x"
        store.start_placed(db=db, job_id=job_id)
        running = store.get_job(db=db, job_id=job_id)
        assert running is not None and running.status == "running" and running.started_at
        assert running.to_wire().queue_reason is None
    finally:
        db.close()
