"""A real training run (the tiny model, in the plane's engine worker), driven by the client.

Its event stream is followed through a proxy that cuts the connection every 1300 bytes
(just above its largest frame) while the job trains; then its artifacts are downloaded
and its adapter answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.cloud import (
    AdapterRef,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    CloudApiClient,
    InferenceRequest,
    JobCreate,
    JobEvent,
    ProjectState,
    follow_events,
    iter_frames,
    request_anonymous_token,
)
from arkor.server import RunningPlane
from tests.utils.engine_answer import greedy_answer
from tests.utils.plane import running_plane, tiny_job, toy_dataset
from tests.utils.proxy import TcpProxy
from tests.utils.requires import need

pytestmark = pytest.mark.slow

HELLO = [ChatMessage(role="user", content="say hello")]
HELLO_WIRE = [message.model_dump() for message in HELLO]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch", "training needs the local extra")
    from tests.utils.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def engine_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    """A plane with the real engine worker, kept off the HuggingFace Hub."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("HF_DATASETS_OFFLINE", "1")
        with running_plane(tmp_path_factory.mktemp("engine-plane")) as plane:
            yield plane


def test_a_real_run_through_a_flaky_link(
    engine_plane: RunningPlane, tiny_model: Path, tmp_path: Path
) -> None:
    identity = request_anonymous_token(engine_plane.url)
    with CloudApiClient.from_credentials(identity) as client:
        client.create_project(identity.org_slug, name="real", slug="real")
        scope = ProjectState(org_slug=identity.org_slug, project_slug="real", project_id="-")
        upload = client.upload(scope, toy_dataset(), filename="train.jsonl")
        body = JobCreate.model_validate(tiny_job(tiny_model, upload.id))
        job = client.create_job(scope, body, idempotency_key="real-run")

        with (
            TcpProxy(engine_plane.url.removeprefix("http://"), drop_every=1300) as proxy,
            CloudApiClient.from_credentials(identity, via=proxy.url) as flaky,
        ):
            followed: list[JobEvent] = list(
                follow_events(flaky, scope, job.id, base_delay=0.01, max_delay=0.1)
            )
        assert followed == client.get_job(scope, job.id).events
        assert proxy.drops >= 2
        types = [event.type for event in followed]
        assert types[0] == "training.started" and types[-1] == "training.completed"
        assert [getattr(e, "step", None) for e in followed if e.type == "checkpoint.saved"] == [
            2,
            4,
        ]

        paths = {artifact.path for artifact in client.list_artifacts(scope, job.id)}
        assert "adapter/adapter_config.json" in paths
        target = client.download_artifact(
            scope, job.id, "adapter/adapter_config.json", tmp_path / "adapter_config.json"
        )
        assert "r" in json.loads(target.read_text())

        final = AdapterRef(kind="final", job_id=job.id)
        request = InferenceRequest(
            messages=HELLO, adapter=final, max_tokens=6, temperature=0, stream=False
        )
        answer = client.chat(scope, request)
        completion = ChatCompletion.model_validate_json(answer.content)
        assert completion.model == f"{job.id}/final"
        folder = engine_plane.settings.artifacts_dir / job.id / "adapter"
        expected = greedy_answer(tiny_model, folder, HELLO_WIRE, 6)
        assert expected != greedy_answer(tiny_model, None, HELLO_WIRE, 6), (
            "training changed nothing"
        )
        assert completion.choices[0].message.content == expected

        streamed = request.model_copy(update={"stream": True})
        with client.stream_chat(scope, streamed) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            data = [frame.data for frame in iter_frames(response.iter_text())]
        assert data[-1] == "[DONE]"
        chunks = [ChatCompletionChunk.model_validate_json(item) for item in data[:-1]]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        assert text == completion.choices[0].message.content  # greedy: the same answer
