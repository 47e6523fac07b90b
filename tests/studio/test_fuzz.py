"""Studio as attackers and crowds use it: a fuzzer on its OpenAPI document, and many clients.

Studio runs for real (uvicorn on a free loopback port) over a real plane whose workers
exit at once, so a fuzzed "start a run" costs milliseconds. The checks: no answer is a
5xx, every error is Studio's one JSON shape, and file descriptors stay flat under load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.utils.plane import running_plane
from tests.utils.ports import free_port
from tests.utils.requires import need
from tests.utils.studio import fastapi_app

need("fastapi", "Studio is a FastAPI app")

TOKEN = "fuzz-token"
HEADERS = {"X-Arkor-Studio-Token": TOKEN}
PROJECT_TOML = """\
[trainer]
name = "fuzzed"
model = "./no-such-model"
max_steps = 2

[trainer.dataset]
type = "file"
path = "train.jsonl"
"""


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """Studio served on a free port for a project whose plane runs no real training."""
    import uvicorn

    from arkor.sdk import open_session
    from arkor.studio._app import create_app
    from arkor.studio._studio import Studio

    root = tmp_path_factory.mktemp("fuzzed-project")
    (root / "arkor.toml").write_text(PROJECT_TOML, encoding="utf-8")
    (root / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n',
        encoding="utf-8",
    )
    home = tmp_path_factory.mktemp("fuzzed-home")
    with running_plane(home / "plane", worker_command=("true",)) as plane:
        monkeypatch = pytest.MonkeyPatch()
        monkeypatch.setenv("ARKOR_HOME", str(home / "client"))
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        session = open_session(cwd=root)
        app = create_app(Studio(root, session), TOKEN)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}", app
        finally:
            server.should_exit = True
            thread.join(10)
            session.close()
            monkeypatch.undo()


def _document() -> dict[str, Any]:
    """The OpenAPI document Studio serves at /api/openapi.json (building the app connects
    to nothing: routes reach the plane only when called)."""
    from arkor.studio._app import create_app
    from arkor.studio._studio import Studio

    return fastapi_app(create_app(Studio(Path("/nonexistent"), None), TOKEN)).openapi()  # type: ignore[arg-type]


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_studio_answers_every_fuzzed_request_without_a_server_error(
    case: schemathesis.Case, studio: tuple[str, Any]
) -> None:
    response = case.call(base_url=studio[0], headers=HEADERS, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400 and response.status_code != 204:
        body = response.json()
        assert isinstance(body["error"]["message"], str), body
        assert body["error"]["message"]
        assert "Traceback" not in response.text


def test_huge_and_malformed_bodies_get_clear_errors(studio: tuple[str, Any]) -> None:
    url = studio[0]
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
        huge = client.post("/api/validate", json={"overrides": ["x=" + "y" * 10_000]})
        assert huge.status_code == 422
        many = client.post("/api/validate", json={"overrides": ["a=b"] * 1000})
        assert many.status_code == 422
        broken = client.post(
            "/api/chat", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422
        assert broken.json()["error"]["message"]
        unknown = client.post("/api/validate", json={"config": "../../etc/passwd"})
        assert unknown.status_code == 400
        assert "not one of this project's config files" in unknown.json()["error"]["message"]


def test_many_clients_at_once_leave_file_descriptors_flat(studio: tuple[str, Any]) -> None:
    url = studio[0]
    process = psutil.Process()

    def burst() -> None:
        def one(index: int) -> int:
            with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
                path = ("/api/project", "/api/runs", "/api/configs", "/api/endpoints")[index % 4]
                return client.get(path).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert set(pool.map(one, range(160))) == {200}

    burst()
    before = process.num_fds()
    for _ in range(3):
        burst()
    assert process.num_fds() <= before + 8
