"""``POST /v1/data/inspect`` through a real plane: training's masks, row by row, over HTTP."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import (
    MAX_INSPECT_ROWS,
    AuthError,
    CloudApiClient,
    CloudApiError,
    DataInspectRequest,
    NotFoundError,
    ProjectScope,
)
from arkor.server import RunningPlane
from tests.utils.plane import QUESTIONS, Caller, running_plane, sign_up

CHAT = {
    "messages": [
        {"role": "user", "content": "what color is the sky?"},
        {"role": "assistant", "content": "blue"},
    ]
}
NO_ASSISTANT = {"messages": [{"role": "user", "content": "hello"}]}


def scope(caller: Caller) -> ProjectScope:
    return ProjectScope(org_slug=caller.org_slug, project_slug=caller.project_slug)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    """One plane for the module, so its tokenizing process and tokenizer load once."""
    with running_plane(tmp_path_factory.mktemp("inspect") / "home", worker_command=("true",)) as up:
        yield up


@pytest.fixture(scope="module")
def caller(plane: RunningPlane) -> Iterator[Caller]:
    identity = sign_up(plane.url)
    yield identity
    identity.close()


@pytest.fixture
def client(caller: Caller) -> Iterator[CloudApiClient]:
    with CloudApiClient(caller.url, caller.token) as api:
        yield api


def request(model: Path | str, rows: list[dict[str, Any]], **settings: Any) -> DataInspectRequest:
    return DataInspectRequest(model=str(model), rows=rows, **settings)


def test_rows_are_counted_and_masked_as_the_engine_does(
    client: CloudApiClient, caller: Caller, tiny_model: Path
) -> None:
    from arkor.engine._inspect import inspect_rows, tokenizer_for

    rows = [CHAT, NO_ASSISTANT, {"messages": "not json"}]
    answer = client.inspect_data(scope(caller), request(tiny_model, rows))
    local = inspect_rows(
        tokenizer_for(str(tiny_model), None),
        rows,
        dataset_format=None,
        max_length=None,
        train_on_responses_only=None,
        detail=0,
    )
    assert answer.format == {"type": "chat", "messages": "messages"}
    assert answer.max_length == local.max_length
    assert [(row.tokens, row.learned, row.truncated, row.error) for row in answer.rows] == [
        (row.tokens, row.learned, row.truncated, row.error) for row in local.rows
    ]
    assert answer.rows[0].learned > 0 and answer.rows[0].error is None
    assert answer.rows[1].learned == 0 and "no assistant message" in (answer.rows[1].error or "")
    assert answer.rows[2].error is not None
    assert answer.detail is not None and local.detail is not None
    assert answer.detail.index == 0
    assert [(t.text, t.learned) for t in answer.detail.tokens] == [
        (piece.text, piece.learned) for piece in local.detail
    ]
    learned = "".join(token.text for token in answer.detail.tokens if token.learned)
    assert learned == "blue<|im_end|>"


def test_settings_and_the_detail_row_apply(
    client: CloudApiClient, caller: Caller, tiny_model: Path
) -> None:
    long = {"text": "red green blue yellow " * 20}
    answer = client.inspect_data(
        scope(caller),
        request(tiny_model, [NO_ASSISTANT, long], dataset_format="text", max_length=16, detail=1),
    )
    assert answer.format == {"type": "text", "text": "text"}
    assert answer.rows[0].error is not None  # a chat row has no `text` column to read
    truncated = answer.rows[1]
    assert truncated.truncated and truncated.learned == 16 and truncated.tokens > 16
    assert answer.detail is not None and answer.detail.index == 1
    assert sum(token.learned for token in answer.detail.tokens) == 16

    whole = client.inspect_data(
        scope(caller), request(tiny_model, [CHAT], train_on_responses_only=False)
    )
    assert whole.rows[0].learned == whole.rows[0].tokens


def test_two_thousand_short_chat_rows_fit_the_body_limit(
    client: CloudApiClient, caller: Caller, tiny_model: Path
) -> None:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QUESTIONS.items()
    ] * (MAX_INSPECT_ROWS // len(QUESTIONS) + 1)
    rows = rows[:MAX_INSPECT_ROWS]
    answer = client.inspect_data(scope(caller), request(tiny_model, rows))
    assert len(answer.rows) == MAX_INSPECT_ROWS
    assert all(row.error is None and row.learned > 0 for row in answer.rows)


def test_without_a_token_the_answer_is_401(plane: RunningPlane, caller: Caller) -> None:
    with CloudApiClient(plane.url) as anonymous, pytest.raises(AuthError) as raised:
        anonymous.inspect_data(scope(caller), request("m", [CHAT]))
    assert raised.value.status == 401


def test_another_orgs_project_is_404(plane: RunningPlane, caller: Caller, tiny_model: Path) -> None:
    outsider = sign_up(plane.url, project_slug="mine")
    try:
        with CloudApiClient(plane.url, outsider.token) as api, pytest.raises(NotFoundError):
            api.inspect_data(scope(caller), request(tiny_model, [CHAT]))
    finally:
        outsider.close()


def test_too_many_rows_or_a_detail_past_them_is_422(caller: Caller) -> None:
    too_many = {"model": "m", "rows": [{"text": "x"}] * (MAX_INSPECT_ROWS + 1)}
    answer = caller.http.post("/v1/data/inspect", params=caller.scope, json=too_many)
    assert answer.status_code == 422, answer.text
    assert "rows" in json.dumps(answer.json()["issues"])
    past = {"model": "m", "rows": [{"text": "x"}], "detail": 1}
    answer = caller.http.post("/v1/data/inspect", params=caller.scope, json=past)
    assert answer.status_code == 422 and "detail = 1 names no row" in answer.text


def test_a_model_that_cannot_be_found_is_422_with_the_fix(
    client: CloudApiClient, caller: Caller, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(CloudApiError) as raised:
        client.inspect_data(scope(caller), request(f"{missing}/", [CHAT]))
    assert raised.value.status == 422
    assert "does not exist" in raised.value.message and str(missing) in raised.value.message


def test_rows_no_format_fits_are_422(
    client: CloudApiClient, caller: Caller, tiny_model: Path
) -> None:
    with pytest.raises(CloudApiError) as raised:
        client.inspect_data(scope(caller), request(tiny_model, [{"question": "x"}]))
    assert raised.value.status == 422 and "cannot tell the format" in raised.value.message


def test_without_the_engine_extra_the_answer_names_the_install(
    client: CloudApiClient, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plane runs in this process; make ``transformers`` look uninstalled to it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "transformers" else real(name, *args),
    )
    with pytest.raises(CloudApiError) as raised:
        client.inspect_data(scope(caller), request("m", [CHAT]))
    assert raised.value.status == 503
    assert "pip install 'arkor[local]'" in raised.value.message


PROBE = """\
import json, sys
sys.path.insert(0, {root!r})
from arkor.cloud import CloudApiClient, DataInspectRequest, ProjectScope
from tests.utils.plane import running_plane, sign_up

with running_plane({home!r}, worker_command=("true",)) as plane:
    caller = sign_up(plane.url)
    with CloudApiClient(plane.url, caller.token) as client:
        answer = client.inspect_data(
            ProjectScope(org_slug=caller.org_slug, project_slug=caller.project_slug),
            DataInspectRequest(model={model!r}, rows=[{chat!r}]),
        )
    assert answer.rows[0].learned > 0, answer
    caller.close()
print(json.dumps(sorted(name for name in ("torch", "transformers", "datasets") if name in sys.modules)))
"""


@pytest.mark.slow
def test_the_plane_process_imports_no_ml_library(tiny_model: Path, tmp_path: Path) -> None:
    """Tokenizing runs in a helper process, so the plane's own stays free of the ML stack."""
    probe = PROBE.format(
        root=str(Path(__file__).resolve().parents[2]),
        home=str(tmp_path / "home"),
        model=str(tiny_model),
        chat=CHAT,
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def helper_pids() -> list[int]:
    """This process's children that run the inspection helper (Linux: read from /proc)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"arkor.engine._inspect" in command:
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_helper_is_started_again(
    client: CloudApiClient, caller: Caller, tiny_model: Path
) -> None:
    client.inspect_data(scope(caller), request(tiny_model, [CHAT]))
    (pid,) = helper_pids()
    os.kill(pid, signal.SIGKILL)
    answers = []
    for _ in range(2):
        try:
            answers.append(client.inspect_data(scope(caller), request(tiny_model, [CHAT])))
        except CloudApiError as error:  # the request that finds it dead, if it is not reaped yet
            assert error.status == 503 and "starts again" in error.message
    assert answers and answers[-1].rows[0].learned > 0
    assert helper_pids() not in ([], [pid])
