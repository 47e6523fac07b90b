"""Artifacts: listed without the engine's scratch files, downloaded as inert attachments,
and nothing outside the job's folder is listed or served, links included."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.server import RunningPlane
from tests.server.test_jobs import create
from tests.utils.plane import Caller, wait_for_status


@pytest.fixture
def job_files(plane: RunningPlane, caller: Caller) -> tuple[str, Path]:
    """A finished job whose folder holds what a worker writes, plus links leading out."""
    job_id = create(caller, "events:0")["id"]
    wait_for_status(caller, job_id, {"completed"})
    folder = plane.settings.artifacts_dir / job_id
    for relative, text in {
        "adapter/adapter_config.json": "{}",
        "checkpoints/checkpoint-2/adapter_config.json": "{}",
        "cache/dataset.arrow": "scratch",
    }.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    (folder / "adapter" / "outside").symlink_to(plane.settings.database_path)
    (folder / "logs").symlink_to(plane.settings.state_dir, target_is_directory=True)
    return job_id, folder


def test_list_and_download(caller: Caller, job_files: tuple[str, Path]) -> None:
    job_id, _ = job_files
    listed = caller.http.get(f"/v1/jobs/{job_id}/artifacts", params=caller.scope).json()
    assert [a["path"] for a in listed["artifacts"]] == [
        "adapter/adapter_config.json",
        "checkpoints/checkpoint-2/adapter_config.json",
    ]
    answer = caller.http.get(
        f"/v1/jobs/{job_id}/artifacts/checkpoints/checkpoint-2/adapter_config.json",
        params=caller.scope,
    )
    assert answer.status_code == 200 and answer.content == b"{}"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_binary_and_page_like_files_download_as_inert_attachments(
    caller: Caller, job_files: tuple[str, Path]
) -> None:
    job_id, folder = job_files
    (folder / "adapter" / "model.safetensors").write_bytes(b"\x00weights")
    (folder / "adapter" / "report.html").write_text("<script>alert(1)</script>")
    for name in ("model.safetensors", "report.html"):
        answer = caller.http.get(f"/v1/jobs/{job_id}/artifacts/adapter/{name}", params=caller.scope)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"] == f'attachment; filename="{name}"'


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Farkor.db",
        "%2e%2e/%2e%2e/arkor.db",
        "adapter/..%2F..%2F..%2Farkor.db",
        "%2Fetc%2Fpasswd",
        "adapter/outside",
        "logs/arkor.db",
    ],
)
def test_paths_leaving_the_job_are_refused(
    caller: Caller, job_files: tuple[str, Path], path: str
) -> None:
    job_id, _ = job_files
    answer = caller.http.get(f"{caller.url}/v1/jobs/{job_id}/artifacts/{path}", params=caller.scope)
    assert answer.status_code == 400, answer.text
    assert "leaves the job's artifacts" in answer.json()["error"]


@pytest.mark.parametrize("path", ["adapter/nope.bin", "adapter", "cache/dataset.arrow"])
def test_missing_and_private_files_are_404(
    caller: Caller, job_files: tuple[str, Path], path: str
) -> None:
    job_id, _ = job_files
    answer = caller.http.get(f"/v1/jobs/{job_id}/artifacts/{path}", params=caller.scope)
    assert answer.status_code == 404


def test_a_nul_in_the_path_is_a_clear_400(caller: Caller, job_files: tuple[str, Path]) -> None:
    job_id, _ = job_files
    answer = caller.http.get(f"/v1/jobs/{job_id}/artifacts/adapter%00/x", params=caller.scope)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "The artifact path holds a NUL character; give a path inside the job."
    }
