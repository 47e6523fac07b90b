"""A blob dataset's token reaches the job's worker and nothing else: no API answer, no
command's output, no log or other file of the plane or the project."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import httpx
import pytest

from arkor.cloud import read_credentials, read_state
from arkor.server import RunningPlane
from tests.engine.conftest import BlobServer, blob_server
from tests.utils.cli import CliRunner
from tests.utils.plane import client_headers, running_plane, toy_dataset
from tests.utils.projects import write

__all__ = ["blob_server"]

pytestmark = pytest.mark.slow


def files_holding(folder: Path, secret: bytes, *, besides: tuple[str, ...] = ()) -> list[Path]:
    """Files under ``folder`` (but those named in ``besides``) whose bytes contain ``secret``."""
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name not in besides and secret in path.read_bytes()
    ]


def test_the_token_reaches_the_worker_and_no_answer_or_file(
    project: Path,
    cli: CliRunner,
    tiny_model: Path,
    tmp_path: Path,
    blob_server: BlobServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = f"blob-{secrets.token_hex(12)}"
    blob_server.token = token
    url = blob_server.add("/private/train.jsonl", toy_dataset(), "application/jsonl")
    write(
        project,
        "arkor.toml",
        f"""\
        [trainer]
        name = "private-data"
        model = "{tiny_model}"
        max_steps = 1
        batch_size = 2
        logging_steps = 1
        save_steps = 1

        [trainer.lora]
        max_length = 64

        [trainer.dataset]
        type = "blob"
        url = "{url}"
        token = "${{env:BLOB_TOKEN}}"
        """,
    )
    monkeypatch.setenv("BLOB_TOKEN", token)
    plane: RunningPlane
    with running_plane(tmp_path / "plane-home") as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        started = cli("start", "--json")
        assert started.exit_code == 0, started.stderr
        summary = json.loads(started.stdout.splitlines()[-1])
        assert summary["status"] == "completed", summary
        job_id = summary["job"]["id"]
        shown = [
            cli("jobs", "show", job_id, "--json"),
            cli("jobs", "show", job_id),
            cli("jobs", "list", "--json"),
            cli("jobs", "logs", job_id, "--json"),
        ]
        credentials, scope = read_credentials(), read_state()
        assert credentials is not None and scope is not None
        with httpx.Client(
            base_url=plane.url, headers=client_headers(credentials.bearer_token)
        ) as http:
            params = {"orgSlug": scope.org_slug, "projectSlug": scope.project_slug}
            answers = [http.get(f"/v1/jobs/{job_id}", params=params)]
            answers.append(http.get("/v1/jobs", params=params))
        state = plane.settings.state_dir

    assert f"Bearer {token}" in blob_server.authorizations, "the worker sent the token"
    pinned = hashlib.sha256(toy_dataset()).hexdigest()
    assert summary["job"]["config"]["datasetSource"] == {
        "type": "blob",
        "url": url,
        "token": "***",
        "sha256": pinned,
    }
    assert token not in started.stdout + started.stderr
    for result in shown:
        assert result.exit_code == 0, result.stderr
        assert token not in result.stdout + result.stderr
    assert json.loads(shown[0].stdout)["job"]["config"]["datasetSource"]["token"] == "***"
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert token not in answer.text and '"token":"***"' in answer.text
    assert files_holding(state, token.encode(), besides=("arkor.db", "arkor.db-wal")) == []
    assert files_holding(project, token.encode()) == []
