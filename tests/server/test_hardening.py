"""The plane under abuse: internal errors without their text, Host checks, safe headers,
owner-only state, strict event positions, 405s naming every method, bounded connections."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path

import httpx
import psutil
import pytest
from anyio._backends._asyncio import WorkerThread

from arkor.server import RunningPlane, _store
from arkor.server._db import _IDLE_CONNECTIONS
from arkor.server._guards import HostGuard
from tests.server.test_jobs import create
from tests.utils.plane import Caller, plane_settings, running_plane, sign_up, wait_for_status


def test_an_internal_error_answers_a_request_id_never_its_text(
    caller: Caller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The injected fault: the store fails with text that must stay in the log."""

    def broken(**_: object) -> None:
        raise RuntimeError("secret detail /srv/arkor/local/arkor.db")

    monkeypatch.setattr(_store, "list_projects", broken)
    with caplog.at_level(logging.ERROR, logger="arkor.server"):
        answer = caller.http.get("/v1/projects", params={"orgSlug": caller.org_slug})
    assert answer.status_code == 500
    request_id = answer.headers["x-request-id"]
    assert answer.json() == {"error": "internal error", "requestId": request_id}
    assert "secret" not in answer.text
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "secret detail" in str(logged[0].exc_info[1])


def test_every_answer_has_a_request_id_and_nosniff(caller: Caller) -> None:
    answers = [
        caller.http.get("/v1/me"),
        caller.http.get("/v1/jobs/nope", params=caller.scope),
        caller.http.get("/v1/jobs", params={**caller.scope, "limit": 0}),
        caller.http.get("/v1/me", headers={"Host": "evil.example"}),
        caller.http.post("/v1/jobs", params=caller.scope, content=b"x" * (2 << 20)),
    ]
    assert [answer.status_code for answer in answers] == [200, 404, 422, 400, 413]
    ids = {answer.headers["x-request-id"] for answer in answers}
    assert len(ids) == len(answers)
    assert {answer.headers["x-content-type-options"] for answer in answers} == {"nosniff"}


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8765", "studio.localhost:1", "127.0.0.1", "127.0.0.1:9", "[::1]:80"],
)
def test_a_loopback_plane_answers_to_loopback_names(caller: Caller, host: str) -> None:
    assert caller.http.get("/v1/me", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "localhost.evil.example", "10.0.0.5", "127.0.0.1.nip.io", "a:b:c"]
)
def test_a_loopback_plane_refuses_other_hosts(caller: Caller, host: str) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1."""
    answer = caller.http.post(
        f"{caller.url}/v1/auth/anonymous", json={"kind": "cli"}, headers={"Host": host}
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "does not answer to the Host" in error and "--allowed-host" in error
    assert "token" not in answer.json()


def test_a_remote_plane_answers_to_ips_and_the_configured_names(tmp_path: Path) -> None:
    guard = HostGuard(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        settings=plane_settings(
            tmp_path,
            host="0.0.0.0",
            allowed_hosts=("gpu.example.com", "*.lab.example"),
            public_url="https://arkor.example.org/base",
        ),
    )
    allowed = ["gpu.example.com:8765", "a.lab.example", "arkor.example.org", "localhost"]
    allowed += ["192.168.1.20:8765", "[fe80::1]"]
    refused = ["evil.example", "lab.example", "gpu.example.com.evil", "", "host:port"]
    assert [guard.allows(host) for host in allowed] == [True] * len(allowed)
    assert [guard.allows(host) for host in refused] == [False] * len(refused)


def test_a_405_lists_every_method_of_the_path(caller: Caller) -> None:
    answer = caller.http.delete("/v1/jobs", params=caller.scope)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert answer.json()["error"] == "Method Not Allowed"
    answer = caller.http.put("/v1/jobs/some-job/cancel", params=caller.scope)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("after", "99999999999999999999"),
        ("after", "9223372036854775808"),
        ("after", "1_000"),
        ("after", "+1"),
        ("after", "-1"),
        ("after", ""),
        ("Last-Event-ID", "9223372036854775808"),
        ("Last-Event-ID", "1_000"),
        ("after", "٣"),
        ("Last-Event-ID", "0x10"),
    ],
)
def test_an_out_of_range_position_is_400_before_the_stream(
    caller: Caller, name: str, value: str
) -> None:
    job_id = create(caller, "events:2")["id"]
    params, headers = dict(caller.scope), {}
    if name == "after":
        params["after"] = value
    else:
        headers[name] = value
    answer = caller.http.get(f"/v1/jobs/{job_id}/events/stream", params=params, headers=headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert f"{name} must be an event id" in answer.json()["error"]


def test_the_largest_position_is_valid(caller: Caller) -> None:
    job_id = create(caller, "events:2")["id"]
    wait_for_status(caller, job_id, {"completed"})
    answer = caller.http.get(
        f"/v1/jobs/{job_id}/events/stream",
        params=caller.scope,
        headers={"Last-Event-ID": str(2**63 - 1)},
    )
    assert answer.status_code == 200 and answer.text == "event: end\ndata: {}\n\n"


def modes(root: Path) -> dict[str, int]:
    return {
        path.relative_to(root).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


WRITES_AN_ARTIFACT = (
    "import pathlib, sys; folder = pathlib.Path(sys.argv[sys.argv.index('--artifacts') + 1]); "
    "(folder / 'adapter').mkdir(parents=True); (folder / 'adapter' / 'weights.bin').write_bytes(b'w')"
)


def test_the_home_and_everything_in_it_are_owner_only(tmp_path: Path) -> None:
    """Under umask 022: folders 0700, the database, uploads, logs and artifacts 0600."""
    previous = os.umask(0o022)
    try:
        home = tmp_path / "home"
        with running_plane(
            home, worker_command=(sys.executable, "-c", WRITES_AN_ARTIFACT)
        ) as plane:
            caller = sign_up(plane.url)
            data = b'{"text": "hi"}\n'
            upload_id = caller.http.post(
                "/v1/uploads",
                params=caller.scope,
                content=data,
                headers={"X-Content-Sha256": sha256(data).hexdigest()},
            ).json()["upload"]["id"]
            source = {"type": "file", "uploadId": upload_id}
            job = caller.http.post(
                "/v1/jobs",
                params=caller.scope,
                json={"name": "n", "config": {"model": "m", "datasetSource": source}},
            ).json()["job"]
            wait_for_status(caller, job["id"], {"failed"})
            caller.close()
        found = modes(home)
    finally:
        os.umask(previous)
    folders = {path for path in found if (home / path).is_dir()}
    assert {path: found[path] for path in folders} == dict.fromkeys(folders, 0o700)
    files = set(found) - folders
    assert {path: found[path] for path in files} == dict.fromkeys(files, 0o600)
    assert {"local/arkor.db", f"local/uploads/{sha256(data).hexdigest()}"} <= files
    assert f"local/logs/{job['id']}.log" in files
    assert f"local/artifacts/{job['id']}/adapter/weights.bin" in files


def handles_on(path: Path) -> int:
    return sum(1 for f in psutil.Process().open_files() if Path(f.path) == path)


@pytest.fixture
def fast_thread_turnover(monkeypatch: pytest.MonkeyPatch) -> None:
    """anyio retires a worker thread idle for 10 s; make it 0.1 s so rounds recycle threads."""
    monkeypatch.setattr(WorkerThread, "MAX_IDLE_TIME", 0.1)


def test_sqlite_handles_stay_bounded_as_threads_are_recycled(
    plane: RunningPlane, caller: Caller, fast_thread_turnover: None
) -> None:
    """40 concurrent clients, in rounds with pauses longer than the idle timeout."""
    database = plane.settings.database_path

    def me(_: int) -> int:
        with httpx.Client(base_url=caller.url, headers=caller.http.headers) as client:
            return sum(client.get("/v1/me").status_code for _ in range(3))

    counts = []
    with ThreadPoolExecutor(40) as pool:
        for _ in range(5):
            assert set(pool.map(me, range(40))) == {600}
            counts.append(handles_on(database))
            time.sleep(0.3)
    # a live thread pool of up to 40 threads, plus the idle pool; never one per finished thread
    assert max(counts) <= 2 * (40 + _IDLE_CONNECTIONS + 4), counts
    assert counts[-1] <= counts[0] + 2 * _IDLE_CONNECTIONS, counts


def test_every_operation_documents_its_errors_with_their_bodies(caller: Caller) -> None:
    document = httpx.get(f"{caller.url}/openapi.json").json()
    bodies = {
        "400": "ErrorBody",
        "405": "ErrorBody",
        "413": "ErrorBody",
        "422": "InvalidRequest",
        "426": "UpgradeRequired",
        "500": "InternalError",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            documented = {
                status: responses[status]["content"]["application/json"]["schema"]["$ref"]
                for status in bodies
            }
            expected = {status: f"#/components/schemas/{name}" for status, name in bodies.items()}
            if path.startswith("/d/{slug}/v1/"):  # a deployment's OpenAI API errs as OpenAI does
                expected["400"] = "#/components/schemas/OpenAIError"
            assert documented == expected, f"{method.upper()} {path}"
            if "orgSlug" in {parameter["name"] for parameter in operation.get("parameters", [])}:
                assert {"401", "404"} <= set(responses), f"{method.upper()} {path}"
    assert "409" in document["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]


def test_serve_answers_to_the_names_given_with_allowed_host(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "arkor", "serve", "--host", "0.0.0.0", "--allow-remote"]
    command += ["--port", "0", "--allowed-host", "Arkor.Test"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "ARKOR_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = next(line for line in process.stdout if line.startswith("Arkor control plane"))
        url = banner.split()[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                named = httpx.get(f"{url}/v1/auth/cli/config", headers={"Host": "arkor.test:80"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "arkor serve did not start"
                time.sleep(0.05)
        other = httpx.get(f"{url}/v1/auth/cli/config", headers={"Host": "evil.test"})
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert named.status_code == 200
    assert other.status_code == 400 and "arkor.test" in other.json()["error"]
