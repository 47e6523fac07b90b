"""Size limits and the job contract: capped bodies and uploads, paged lists, strict configs."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import JobConfig, JobCreate
from arkor.server import RunningPlane
from tests.server.test_jobs import job_body
from tests.utils.plane import Caller, running_plane, sign_up, signed_in_project

HUB = {"model": "m", "datasetSource": {"type": "huggingface", "name": "org/data"}}


@pytest.fixture
def small_plane(tmp_path: Path) -> Iterator[RunningPlane]:
    """A plane with a 1000-byte JSON cap and a 4000-byte upload cap; workers do nothing."""
    with running_plane(
        tmp_path / "home", worker_command=("true",), max_body_bytes=1000, max_upload_bytes=4000
    ) as plane:
        yield plane


@pytest.fixture
def small_caller(small_plane: RunningPlane) -> Iterator[Caller]:
    caller = sign_up(small_plane.url)
    yield caller
    caller.close()


def job_count(caller: Caller) -> int:
    return len(caller.http.get("/v1/jobs", params=caller.scope).json()["jobs"])


def test_a_json_body_over_the_default_mib_is_413_naming_the_limit(caller: Caller) -> None:
    body = json.dumps({"name": "n", "config": {**HUB, "optim": "x" * (1 << 20)}})
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert "1 MiB, 1048576 bytes" in answer.json()["error"]
    assert "ARKOR_MAX_BODY_BYTES" in answer.json()["error"]
    assert job_count(caller) == 0


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(
    caller: Caller,
) -> None:
    """The plane answers on the headers alone; a client need not send 10 MB to learn."""
    host, port = caller.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/jobs?orgSlug={caller.org_slug}&projectSlug=demo HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {caller.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode())
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 413
    assert "1 MiB, 1048576 bytes" in body["error"]


def test_a_streamed_body_is_cut_off_at_the_configured_limit(small_caller: Caller) -> None:
    """Without Content-Length the count is kept as the bytes arrive."""
    body = json.dumps({"name": "n", "config": {**HUB, "optim": "x" * 2000}}).encode()
    answer = small_caller.http.post(
        "/v1/jobs",
        params=small_caller.scope,
        content=iter([body[:500], body[500:]]),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert "(1000 bytes)" in answer.json()["error"]
    assert job_count(small_caller) == 0


def test_uploads_have_their_own_cap_and_leave_nothing_behind(
    small_plane: RunningPlane, small_caller: Caller
) -> None:
    fits = b"x" * 3000  # over the JSON cap, under the upload cap
    stored = small_caller.http.post(
        "/v1/uploads",
        params=small_caller.scope,
        content=fits,
        headers={"X-Content-Sha256": sha256(fits).hexdigest()},
    )
    assert stored.status_code == 201, stored.text
    big = b"y" * 5000
    for content in (big, iter([big[:2500], big[2500:]])):  # declared, then streamed
        refused = small_caller.http.post(
            "/v1/uploads",
            params=small_caller.scope,
            content=content,
            headers={"X-Content-Sha256": sha256(big).hexdigest()},
        )
        assert refused.status_code == 413, refused.text
        assert "(4000 bytes)" in refused.json()["error"]
        assert "ARKOR_MAX_UPLOAD_BYTES" in refused.json()["error"]
    files = sorted(path.name for path in small_plane.settings.uploads_dir.iterdir())
    assert files == [sha256(fits).hexdigest()]


def test_jobs_are_listed_a_page_at_a_time_newest_first(small_caller: Caller) -> None:
    created = []
    for index in range(7):
        answer = small_caller.http.post(
            "/v1/jobs", params=small_caller.scope, json={"name": f"job-{index}", "config": HUB}
        )
        created.append(answer.json()["job"]["id"])
    seen: list[str] = []
    cursors: list[str | None] = []
    params: dict[str, Any] = {**small_caller.scope, "limit": 3}
    for _ in range(4):  # three pages; a fourth request would be one too many
        page = small_caller.http.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["jobs"]]
        cursors.append(page.get("nextCursor"))
        if "nextCursor" not in page:
            break
        params = {**params, "cursor": page["nextCursor"]}
    assert seen == created[::-1]
    assert len(cursors) == 3 and cursors[-1] is None


@pytest.mark.parametrize("cursor", ["abc", "-1", "1_000", "99999999999999999999"])
def test_a_cursor_the_plane_did_not_give_is_400(small_caller: Caller, cursor: str) -> None:
    answer = small_caller.http.get("/v1/jobs", params={**small_caller.scope, "cursor": cursor})
    assert answer.status_code == 400
    assert "nextCursor" in answer.json()["error"]


@pytest.mark.parametrize("limit", [0, 501])
def test_a_page_size_out_of_range_is_422(small_caller: Caller, limit: int) -> None:
    answer = small_caller.http.get("/v1/jobs", params={**small_caller.scope, "limit": limit})
    assert answer.status_code == 422 and "query.limit" in answer.json()["error"]


def test_the_client_follows_every_page(tmp_path: Path) -> None:
    with (
        running_plane(tmp_path / "home", worker_command=("true",)) as plane,
        signed_in_project(plane.url) as (client, project),
    ):
        config = JobConfig.model_validate(HUB)
        for index in range(53):  # more than one page of the default 50
            client.create_job(project, JobCreate(name=f"j{index}", config=config))
        names = [job.name for job in client.list_jobs(project)]
    assert names == [f"j{index}" for index in reversed(range(53))]


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ('"maxSteps": -5', "config.maxSteps"),
        ('"loraR": -1', "config.loraR"),
        ('"loraR": 4096', "config.loraR"),
        ('"batchSize": 0', "config.batchSize"),
        ('"maxSteps": 1e30', "config.maxSteps"),
        ('"seed": 9223372036854775808', "config.seed"),
        ('"learningRate": NaN', "config.learningRate"),
        ('"numTrainEpochs": Infinity', "config.numTrainEpochs"),
        ('"loraDropout": 1.5', "config.loraDropout"),
        ('"lrSchedulerType": "sometimes"', "config.lrSchedulerType"),
        ('"datasetFormat": {"type": "chat", "extra": "x"}', "config.datasetFormat"),
        ('"surprise": 1', "config.surprise"),
        ('"datasetSource": {"type": "file", "uploadId": "u", "mirror": "x"}', "mirror"),
    ],
)
def test_configs_the_config_models_refuse_are_422_naming_the_field(
    caller: Caller, setting: str, field: str
) -> None:
    text = json.dumps({"name": "n", "config": HUB})[:-2] + ", " + setting + "}}"
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, content=text, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]
    assert job_count(caller) == 0


def test_a_job_name_is_held_to_the_config_length(caller: Caller) -> None:
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, json={"name": "n" * 101, "config": HUB}
    )
    assert answer.status_code == 422
    assert "body.name: String should have at most 100 characters" in answer.json()["error"]


def test_a_lone_surrogate_is_422_in_words(caller: Caller) -> None:
    text = json.dumps({"name": "n", "config": HUB}).replace('"n"', '"bad \\ud800 name"')
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, content=text, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "body.name: is not valid Unicode" in answer.json()["error"]


@pytest.mark.parametrize("key", ["datasetFormat", "loraTargetModules", "unknown"])
def test_a_config_nested_900_deep_is_422(caller: Caller, key: str) -> None:
    nested = "[" * 900 + "]" * 900
    text = json.dumps({"name": "n", "config": HUB})[:-2] + f', "{key}": {nested}' + "}}"
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, content=text, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert f"config.{key}" in answer.json()["error"]


def test_what_arkor_build_freezes_is_accepted(caller: Caller) -> None:
    """Every setting at a value the config allows, as a manifest carries it."""
    config = {
        **job_body(caller, "events:0")["config"],
        "datasetFormat": {"type": "prompt_completion", "prompt": "q"},
        "datasetSplit": 0.1,
        "maxSteps": 60,
        "numTrainEpochs": 1.0,
        "learningRate": 2e-4,
        "batchSize": 4,
        "optim": "adamw_torch",
        "lrSchedulerType": "cosine",
        "weightDecay": 0.0,
        "warmupSteps": 0,
        "loggingSteps": 10,
        "saveSteps": 100,
        "evalSteps": 100,
        "loraR": 16,
        "loraAlpha": 16,
        "loraDropout": 0.0,
        "loraTargetModules": ["q_proj", "v_proj"],
        "maxLength": 1024,
        "loadIn4bit": False,
        "trainOnResponsesOnly": True,
        "seed": 42,
        "dryRun": False,
    }
    answer = caller.http.post(
        "/v1/jobs", params=caller.scope, json={"name": "events:0", "config": config}
    )
    assert answer.status_code == 201, answer.text
    stored = answer.json()["job"]["config"]
    assert stored["datasetFormat"] == {
        "type": "prompt_completion",
        "prompt": "q",
        "completion": "completion",
    }
    assert {key: stored[key] for key in config if key != "datasetFormat"} == {
        key: value for key, value in config.items() if key != "datasetFormat"
    }


def test_a_job_an_older_plane_stored_unchecked_still_lists(
    small_plane: RunningPlane, small_caller: Caller
) -> None:
    """Upgrading over a database with ``maxSteps: -5`` or NaN in it must not break the list."""
    job = small_caller.http.post(
        "/v1/jobs", params=small_caller.scope, json={"name": "old", "config": HUB}
    ).json()["job"]
    stored = '{"model": "m", "datasetSource": {"type": "huggingface", "name": "org/data"}, '
    stored += '"maxSteps": -5, "learningRate": NaN, "surprise": 1, "seed": 7}'
    with sqlite3.connect(small_plane.settings.database_path) as connection:
        connection.execute("UPDATE jobs SET config = ? WHERE id = ?", (stored, job["id"]))
    connection.close()
    listed = small_caller.http.get("/v1/jobs", params=small_caller.scope)
    assert listed.status_code == 200, listed.text
    assert listed.json()["jobs"][0]["config"] == {**HUB, "seed": 7}
    one = small_caller.http.get(f"/v1/jobs/{job['id']}", params=small_caller.scope)
    assert one.status_code == 200 and one.json()["job"]["config"] == {**HUB, "seed": 7}
