"""A worker's artifacts over HTTP: resumable sha256-checked uploads, and fetched back to resume."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arkor.engine._artifacts import PlaneStore
from arkor.engine._worker import PlaneClient, PlaneRefused, open_artifact_store
from arkor.server import RunningPlane
from tests.utils.plane import Caller, running_plane, sign_up, wait_for_status
from tests.utils.proxy import TcpProxy

KEEPS_ITS_TOKEN = (
    "import os, pathlib, sys, time; args = sys.argv[1:]; "
    "job = args[args.index('--job-id') + 1]; "
    "home = pathlib.Path(args[args.index('--artifacts') + 1]).parent.parent; "
    "(home / f'{job}.token').write_text(os.environ['ARKOR_JOB_TOKEN']); time.sleep(3600)"
)
"""A worker that leaves its job token where the test finds it, then waits to be stopped."""
CAP = 8 << 20


@dataclass
class Job:
    id: str
    token: str
    http: httpx.Client

    def url(self, path: str) -> str:
        return f"/v1/internal/jobs/{self.id}/artifacts/{path}"

    def put(
        self,
        path: str,
        data: bytes,
        *,
        offset: int = 0,
        length: int | None = None,
        digest: str | None = None,
    ) -> httpx.Response:
        whole = length if length is not None else len(data)
        return self.http.put(
            self.url(path),
            content=data,
            headers={
                "Upload-Offset": str(offset),
                "Upload-Length": str(whole),
                "X-Content-Sha256": digest or hashlib.sha256(data).hexdigest(),
            },
        )


@pytest.fixture
def plane(plane_home: Path) -> Iterator[RunningPlane]:
    with running_plane(
        plane_home,
        worker_command=(sys.executable, "-c", KEEPS_ITS_TOKEN),
        max_upload_bytes=CAP,
        max_jobs=2,
        cancel_grace=0.2,
    ) as running:
        yield running


def start_job(plane: RunningPlane, caller: Caller) -> Job:
    body = {
        "name": "n",
        "config": {"model": "m", "datasetSource": {"type": "huggingface", "name": "x"}},
    }
    created = caller.http.post("/v1/jobs", params=caller.scope, json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["job"]["id"]
    token_file = plane.settings.state_dir / f"{job_id}.token"
    deadline = time.monotonic() + 30
    while not token_file.exists():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    token = token_file.read_text()
    http = httpx.Client(
        base_url=plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return Job(job_id, token, http)


@pytest.fixture
def job(plane: RunningPlane, caller: Caller) -> Iterator[Job]:
    started = start_job(plane, caller)
    yield started
    started.http.close()


def served(caller: Caller, job: Job, path: str) -> httpx.Response:
    return caller.http.get(f"/v1/jobs/{job.id}/artifacts/{path}", params=caller.scope)


def test_an_upload_in_pieces_is_placed_owner_only_and_served(
    plane: RunningPlane, caller: Caller, job: Job
) -> None:
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    path = "adapter/adapter_model.safetensors"
    first = job.put(path, data[:100_000], length=len(data), digest=digest)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 100_000, "complete": False}
    assert served(caller, job, path).status_code == 404, "nothing is served before the end"

    held = job.http.head(job.url(path), headers={"X-Content-Sha256": digest})
    assert held.status_code == 200 and held.headers["upload-offset"] == "100000"
    rest = job.put(path, data[100_000:], offset=100_000, length=len(data), digest=digest)
    assert rest.json() == {"received": len(data), "complete": True}

    download = served(caller, job, path)
    assert download.content == data and download.headers["x-content-sha256"] == digest
    final = plane.settings.artifacts_dir / job.id / path
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert stat.S_IMODE(final.parent.stat().st_mode) == 0o700
    assert list((plane.settings.state_dir / "artifacts-partial" / job.id).iterdir()) == []

    again = job.http.head(job.url(path), headers={"X-Content-Sha256": digest})
    assert again.headers["x-content-sha256"] == digest, "a re-upload can be skipped"
    assert again.headers["upload-offset"] == str(len(data))
    assert job.put("adapter/empty.txt", b"").json() == {"received": 0, "complete": True}
    listed = job.http.get(f"/v1/internal/jobs/{job.id}/artifacts").json()["artifacts"]
    assert listed == [{"path": path, "size": len(data)}, {"path": "adapter/empty.txt", "size": 0}]
    fetched = job.http.get(job.url(path))
    assert fetched.content == data and fetched.headers["x-content-sha256"] == digest


def test_an_offset_the_plane_does_not_hold_is_409_naming_the_held_one(job: Job) -> None:
    data = os.urandom(1000)
    digest = hashlib.sha256(data).hexdigest()
    job.put("eval/held-out.jsonl", data[:400], length=1000, digest=digest)
    ahead = job.put("eval/held-out.jsonl", data[600:], offset=600, length=1000, digest=digest)
    assert ahead.status_code == 409 and ahead.headers["upload-offset"] == "400"
    assert ahead.json()["uploadOffset"] == 400
    other = job.http.head(job.url("eval/held-out.jsonl"), headers={"X-Content-Sha256": "0" * 64})
    assert other.headers["upload-offset"] == "0", "the offset held is per digest"


def test_a_wrong_sha256_is_422_and_leaves_no_file(
    plane: RunningPlane, caller: Caller, job: Job
) -> None:
    data = b"not what the header says"
    answer = job.put("adapter/x.bin", data, digest=hashlib.sha256(b"other").hexdigest())
    assert answer.status_code == 422, answer.text
    assert "sha256" in answer.json()["error"]
    assert not (plane.settings.artifacts_dir / job.id / "adapter").exists()
    partials = plane.settings.state_dir / "artifacts-partial" / job.id
    assert [p for p in partials.rglob("*") if p.is_file()] == []
    assert served(caller, job, "adapter/x.bin").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["../escape.bin", "adapter/../../escape.bin", "cache/model.bin", "a%00b", "%2Fetc%2Fpasswd"],
)
def test_a_path_outside_the_job_is_400(plane: RunningPlane, job: Job, path: str) -> None:
    answer = job.put(path, b"x")
    assert answer.status_code in (400, 404), answer.text  # `..` may be resolved by the client
    assert not list(plane.settings.artifacts_dir.parent.glob("escape.bin"))
    assert not (plane.settings.artifacts_dir / job.id / "cache").exists()


def test_a_path_through_a_link_is_400(plane: RunningPlane, job: Job, tmp_path: Path) -> None:
    root = plane.settings.artifacts_dir / job.id
    root.mkdir(parents=True, exist_ok=True)
    (root / "out").symlink_to(tmp_path)
    answer = job.put("out/x.bin", b"x")
    assert answer.status_code == 400, answer.text
    assert not (tmp_path / "x.bin").exists()


def test_literal_dot_dot_is_400(job: Job) -> None:
    """Sent as it is (httpx would resolve ``..`` in a URL), the plane refuses it."""
    request = job.http.build_request(
        "PUT",
        job.url("x"),
        content=b"x",
        headers={"Upload-Length": "1", "X-Content-Sha256": hashlib.sha256(b"x").hexdigest()},
    )
    request.url = request.url.copy_with(
        raw_path=f"/v1/internal/jobs/{job.id}/artifacts/a/%2E%2E/%2E%2E/x".encode()
    )
    answer = job.http.send(request)
    assert answer.status_code == 400, answer.text


def test_another_jobs_token_is_refused(plane: RunningPlane, caller: Caller, job: Job) -> None:
    other = start_job(plane, caller)
    try:
        answer = other.http.put(
            job.url("adapter/x.bin"),
            content=b"x",
            headers={"Upload-Length": "1", "X-Content-Sha256": hashlib.sha256(b"x").hexdigest()},
        )
        assert answer.status_code == 401, answer.text
        assert other.http.get(f"/v1/internal/jobs/{job.id}/artifacts").status_code == 401
        assert caller.http.get(job.url("adapter/x.bin")).status_code == 401, "a user's token"
    finally:
        other.http.close()
    assert not (plane.settings.artifacts_dir / job.id / "adapter").exists()


def test_a_file_over_the_cap_is_413(plane: RunningPlane, job: Job) -> None:
    declared = job.put("adapter/big.bin", b"x", length=CAP + 1)
    assert declared.status_code == 413, declared.text
    body = job.http.put(
        job.url("adapter/big.bin"),
        content=iter([b"\0" * (1 << 20)] * 9),  # streamed: no Content-Length to refuse early
        headers={"Upload-Length": str(CAP), "X-Content-Sha256": "0" * 64},
    )
    assert body.status_code in (400, 413), body.text
    assert not (plane.settings.artifacts_dir / job.id / "adapter").exists()


def test_a_dropped_upload_goes_on_from_the_plane_offset(
    plane: RunningPlane, caller: Caller, job: Job
) -> None:
    data = os.urandom(CAP - 1000)
    with TcpProxy(plane.url.removeprefix("http://")) as proxy:
        client = PlaneClient(proxy.url, job.id, job.token, lost_after=20)
        store = PlaneStore(client)
        try:
            (store.workdir / "adapter").mkdir()
            (store.workdir / "adapter" / "weights.bin").write_bytes(data)

            def cut_midway() -> None:
                while len(proxy.received) < len(data) // 2:
                    time.sleep(0.0005)
                proxy.drop_all()

            cutter = threading.Thread(target=cut_midway)
            cutter.start()
            store.publish(["adapter"])
            cutter.join()
        finally:
            store.close()
            client.close()
        sent = proxy.received.decode("latin-1")
    assert proxy.drops >= 1
    offsets = [int(n) for n in re.findall(r"(?i)upload-offset: (\d+)", sent)]
    assert offsets[0] == 0 and any(n > 0 for n in offsets[1:]), offsets
    download = served(caller, job, "adapter/weights.bin")
    assert download.content == data
    assert download.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert not store.workdir.exists(), "the scratch folder goes at the end"


def publish(job: Job, files: dict[str, bytes]) -> None:
    client = PlaneClient(str(job.http.base_url), job.id, job.token, lost_after=10)
    store = open_artifact_store("plane", client)
    try:
        for path, data in files.items():
            (store.workdir / path).parent.mkdir(parents=True, exist_ok=True)
            (store.workdir / path).write_bytes(data)
        store.publish(sorted({path.rpartition("/")[0] for path in files}))
    finally:
        store.close()
        client.close()


def test_a_resume_fetches_the_newest_complete_checkpoint(job: Job) -> None:
    complete = {
        f"checkpoints/checkpoint-{step}/{name}": os.urandom(2000)
        for step in (2, 4)
        for name in ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json")
    }
    publish(job, complete)
    job.put("checkpoints/checkpoint-6/adapter_model.safetensors", b"half")  # no trainer state
    client = PlaneClient(str(job.http.base_url), job.id, job.token, lost_after=10)
    store = open_artifact_store("plane", client)
    try:
        store.prepare(resume=False)
        assert list(store.workdir.iterdir()) == [], "a fresh run fetches nothing"
        store.prepare(resume=True)
        fetched = {
            path.relative_to(store.workdir).as_posix(): path.read_bytes()
            for path in store.workdir.rglob("*")
            if path.is_file()
        }
    finally:
        store.close()
        client.close()
    assert fetched == {path: data for path, data in complete.items() if "checkpoint-4/" in path}


def test_a_publish_skips_what_the_plane_holds(plane: RunningPlane, job: Job) -> None:
    files = {"adapter/a.bin": os.urandom(5000), "adapter/b.bin": os.urandom(5000)}
    publish(job, files)
    with TcpProxy(plane.url.removeprefix("http://")) as proxy:
        client = PlaneClient(proxy.url, job.id, job.token, lost_after=10)
        store = PlaneStore(client)
        try:
            for path, data in files.items():
                (store.workdir / path).parent.mkdir(parents=True, exist_ok=True)
                (store.workdir / path).write_bytes(data)
            store.publish(list(files))
        finally:
            store.close()
            client.close()
        assert b"PUT " not in proxy.received and proxy.received.count(b"HEAD ") == 2


def test_a_refused_upload_says_why(job: Job) -> None:
    client = PlaneClient(str(job.http.base_url), job.id, "not-the-token", lost_after=5)
    store = PlaneStore(client)
    try:
        (store.workdir / "adapter").mkdir()
        (store.workdir / "adapter" / "a.bin").write_bytes(b"a")
        with pytest.raises(PlaneRefused, match="401"):
            store.publish(["adapter/a.bin"])
    finally:
        store.close()
        client.close()


def test_uploads_are_allowed_after_the_job_ended(caller: Caller, job: Job) -> None:
    """The token outlives the run so a worker can finish publishing its last event's files."""
    answer = caller.http.post(f"/v1/jobs/{job.id}/cancel", params=caller.scope)
    assert answer.status_code in (200, 202), answer.text
    wait_for_status(caller, job.id, {"cancelled", "failed"})
    assert job.put("adapter/late.bin", b"late").json()["complete"] is True


def test_unfinished_uploads_of_an_ended_job_are_dropped_and_a_running_ones_kept(
    plane_home: Path,
) -> None:
    """Once a job ended longer ago than a worker may still write, its partial uploads go."""
    with (
        running_plane(
            plane_home,
            worker_command=(sys.executable, "-c", KEEPS_ITS_TOKEN),
            max_jobs=2,
            cancel_grace=0.2,
            lease_ttl=1.0,
        ) as plane,
        closing(sign_up(plane.url)) as caller,
    ):
        ended, running = start_job(plane, caller), start_job(plane, caller)
        partials = plane.settings.partial_uploads_dir
        for job in (ended, running):
            half = job.put("adapter/a.bin", b"x" * 10, length=20, digest="0" * 64)
            assert half.json() == {"received": 10, "complete": False}
            assert (partials / job.id).is_dir()
        caller.http.post(f"/v1/jobs/{ended.id}/cancel", params=caller.scope)
        wait_for_status(caller, ended.id, {"cancelled"})
        deadline = time.monotonic() + 30
        while (partials / ended.id).exists():
            assert time.monotonic() < deadline, "the ended job's partial upload was never dropped"
            time.sleep(0.1)
        time.sleep(2 * plane.settings.lease_ttl)  # several more beats
        assert (partials / running.id).is_dir(), "a running job's partial upload was dropped"
        held = running.http.head(
            running.url("adapter/a.bin"), headers={"X-Content-Sha256": "0" * 64}
        )
        assert held.headers["upload-offset"] == "10", "the running job's upload goes on"
        for job in (ended, running):
            job.http.close()
