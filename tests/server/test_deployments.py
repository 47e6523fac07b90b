"""Deployments: a trained adapter behind an OpenAI-compatible URL, driven by the official
``openai`` client against a real plane (the tiny model, offline).

One module-scoped plane trains one job; the tests deploy its adapter (and the bare base)
under different slugs and auth modes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from arkor.cloud import (
    AdapterTarget,
    BaseModelTarget,
    CloudApiClient,
    ConflictError,
    CreateDeploymentInput,
    CreateDeploymentKeyInput,
    DeploymentScope,
    JobCreate,
    ProjectState,
    UpdateDeploymentInput,
    request_anonymous_token,
)
from arkor.cloud._api_models import AdapterRef
from arkor.server import RunningPlane
from arkor.server._db import Database
from arkor.server._deployments import sweep_runs
from tests.utils.engine_answer import greedy_answer
from tests.utils.plane import running_plane, tiny_job, toy_dataset
from tests.utils.requires import need

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "say hello"}]


@dataclass(frozen=True)
class Trained:
    plane: RunningPlane
    client: CloudApiClient
    scope: DeploymentScope
    job_id: str
    tiny_model: Path

    def deploy(self, slug: str, **settings: object) -> str:
        """Deploy the job's final adapter as ``slug``; return the path-form base URL."""
        body = CreateDeploymentInput.model_validate(
            {
                "slug": slug,
                "target": {"kind": "adapter", "adapter": {"kind": "final", "jobId": self.job_id}},
                **settings,
            }
        )
        return self.client.create_deployment(self.scope, body).path_url

    def key(self, slug: str) -> str:
        return self.client.create_deployment_key(self.scope, slug).key.plaintext


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    need("torch", "deployments serve a trained adapter")
    from tests.utils.tiny_model import build_tiny_model

    tiny_model = build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        with running_plane(tmp_path_factory.mktemp("deploy-plane")) as plane:
            identity = request_anonymous_token(plane.url)
            with CloudApiClient.from_credentials(identity) as client:
                client.create_project(identity.org_slug, name="d", slug="d")
                scope = ProjectState(org_slug=identity.org_slug, project_slug="d", project_id="-")
                upload = client.upload(scope, toy_dataset(), filename="train.jsonl")
                # fp32: an adapter whose free-form JSON answers end within the budgets below
                body = tiny_job(tiny_model, upload.id, precision="fp32")
                job = client.create_job(scope, JobCreate.model_validate(body))
                deadline = time.monotonic() + 300
                while client.get_job(scope, job.id, include_events=False).job.status != "completed":
                    assert time.monotonic() < deadline, "the job did not complete"
                    time.sleep(0.2)
                yield Trained(plane, client, scope, job.id, tiny_model)


def expected_answer(trained: Trained, max_tokens: int = 6) -> str:
    folder = trained.plane.settings.artifacts_dir / trained.job_id / "adapter"
    return greedy_answer(trained.tiny_model, folder, HELLO, max_tokens)


def test_the_openai_client_chats_with_a_deployed_adapter(trained: Trained) -> None:
    base_url = trained.deploy("tiny-bot")
    key = trained.key("tiny-bot")
    client = openai.OpenAI(base_url=base_url, api_key=key)

    answer = client.chat.completions.create(
        model="ignored", messages=HELLO, max_tokens=6, temperature=0
    )
    assert answer.choices[0].message.content == expected_answer(trained)
    assert answer.model == "tiny-bot"
    assert answer.usage is not None and answer.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model="ignored", messages=HELLO, max_tokens=6, temperature=0, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == answer.choices[0].message.content

    assert [model.id for model in client.models.list()] == ["tiny-bot"]


def test_keys_are_accepted_as_bearer_or_x_api_key_and_refused_when_wrong_or_revoked(
    trained: Trained,
) -> None:
    base_url = trained.deploy("keyed-bot")
    result = trained.client.create_deployment_key(
        trained.scope, "keyed-bot", CreateDeploymentKeyInput(label="ci")
    )
    key = result.key.plaintext
    assert key.startswith("arkd_") and result.key.prefix == key[: len(result.key.prefix)]
    listed = trained.client.list_deployment_keys(trained.scope, "keyed-bot")
    assert [(k.id, k.label, k.prefix) for k in listed] == [(result.key.id, "ci", result.key.prefix)]
    assert key not in repr(listed), "a listed key never carries its plaintext"

    by_header = httpx.post(
        f"{base_url}/chat/completions",
        headers={"x-api-key": key},
        json={"messages": HELLO, "max_tokens": 2},
        timeout=120,
    )
    assert by_header.status_code == 200, by_header.text
    assert trained.client.list_deployment_keys(trained.scope, "keyed-bot")[0].last_used_at

    with pytest.raises(openai.AuthenticationError, match="Incorrect or revoked API key"):
        openai.OpenAI(base_url=base_url, api_key="arkd_wrong").models.list()

    trained.client.revoke_deployment_key(trained.scope, "keyed-bot", result.key.id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key=key).chat.completions.create(
            model="x", messages=HELLO, max_tokens=2
        )


def test_an_open_deployment_needs_no_key_and_a_disabled_one_says_so(trained: Trained) -> None:
    base_url = trained.deploy("open-bot", authMode="none")
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    assert client.chat.completions.create(model="x", messages=HELLO, max_tokens=2).choices

    trained.client.update_deployment(
        trained.scope, "open-bot", UpdateDeploymentInput(enabled=False)
    )
    with pytest.raises(openai.PermissionDeniedError, match="is disabled"):
        client.chat.completions.create(model="x", messages=HELLO, max_tokens=2)
    trained.client.update_deployment(trained.scope, "open-bot", UpdateDeploymentInput(enabled=True))
    assert client.chat.completions.create(model="x", messages=HELLO, max_tokens=2).choices


def test_a_retarget_keeps_the_url(trained: Trained) -> None:
    base_url = trained.deploy("moving-bot", authMode="none")
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    adapter = client.chat.completions.create(model="x", messages=HELLO, max_tokens=6, temperature=0)
    retarget = UpdateDeploymentInput(target=BaseModelTarget(base_model=str(trained.tiny_model)))
    moved = trained.client.update_deployment(trained.scope, "moving-bot", retarget)
    assert moved.path_url == base_url
    base = client.chat.completions.create(model="x", messages=HELLO, max_tokens=6, temperature=0)
    assert base.choices[0].message.content == greedy_answer(trained.tiny_model, None, HELLO, 6)
    assert base.choices[0].message.content != adapter.choices[0].message.content


def test_the_host_form_reaches_the_same_deployment(trained: Trained) -> None:
    trained.deploy("host-bot", authMode="none")
    port = httpx.URL(trained.plane.url).port
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        headers={"Host": f"host-bot.localhost:{port}"},
        json={"messages": HELLO, "max_tokens": 6, "temperature": 0},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == expected_answer(trained)
    dto = trained.client.get_deployment(trained.scope, "host-bot")
    assert dto.url == f"http://host-bot.localhost:{port}/v1"
    jobs = httpx.get(
        f"http://127.0.0.1:{port}/v1/jobs", headers={"Host": f"host-bot.localhost:{port}"}
    )
    assert jobs.status_code == 404, "a deployment's host serves only its OpenAI API"


def test_slugs_are_checked_and_unique(trained: Trained) -> None:
    trained.deploy("taken-bot")
    with pytest.raises(ConflictError, match="is taken"):
        trained.deploy("taken-bot")
    for slug in ("api", "-bad", "Bad", "a", "x" * 51):
        response = httpx.post(
            f"{trained.plane.url}/v1/endpoints",
            params={"orgSlug": trained.scope.org_slug, "projectSlug": "d"},
            headers={"Authorization": f"Bearer {trained.client.token}"},
            json={"slug": slug, "target": {"kind": "base_model", "baseModel": "x"}},
        )
        assert response.status_code == 422, slug


def test_unsupported_requests_are_refused_clearly(trained: Trained) -> None:
    base_url = trained.deploy("strict-bot", authMode="none")
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="`tools`"):
        client.chat.completions.create(model="x", messages=HELLO, tools=[tool])  # type: ignore[list-item]
    with pytest.raises(openai.NotFoundError, match="no deployment `nobody`"):
        openai.OpenAI(
            base_url=base_url.replace("strict-bot", "nobody"), api_key="unused"
        ).models.list()


def test_runs_are_kept_per_retention_and_swept(trained: Trained) -> None:
    base_url = trained.deploy("logged-bot", authMode="none", runRetentionDays=1)
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    client.chat.completions.create(model="x", messages=HELLO, max_tokens=3, temperature=0)
    stream = client.chat.completions.create(
        model="x", messages=HELLO, max_tokens=3, temperature=0, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    runs = trained.client.list_deployment_runs(trained.scope, "logged-bot")
    assert [run.stream for run in runs] == [True, False]
    assert [run.cold_start for run in runs] == [False, True]
    assert runs[0].answer == streamed and runs[0].status == "ok"
    assert runs[1].messages == HELLO and runs[1].completion_tokens
    assert all(run.latency_ms > 0 for run in runs)

    db = Database(trained.plane.settings.database_path)
    try:
        assert sweep_runs(db=db) == 0, "a day has not passed"
        swept = sweep_runs(db=db, now=time.time() + 2 * 86400)
    finally:
        db.close()
    assert swept >= 2
    assert trained.client.list_deployment_runs(trained.scope, "logged-bot") == []

    trained.client.update_deployment(
        trained.scope, "logged-bot", UpdateDeploymentInput(run_retention_mode="disabled")
    )
    client.chat.completions.create(model="x", messages=HELLO, max_tokens=2)
    assert trained.client.list_deployment_runs(trained.scope, "logged-bot") == []


def test_a_caller_never_sees_another_orgs_deployments(trained: Trained) -> None:
    trained.deploy("private-bot")
    other = request_anonymous_token(trained.plane.url)
    with CloudApiClient.from_credentials(other) as client:
        client.create_project(other.org_slug, name="d", slug="d")
        scope = ProjectState(org_slug=other.org_slug, project_slug="d", project_id="-")
        assert client.list_deployments(scope) == []
        with pytest.raises(Exception, match="not found"):
            client.get_deployment(scope, "private-bot")
        target = AdapterTarget(adapter=AdapterRef(kind="final", job_id=trained.job_id))
        with pytest.raises(Exception, match="not found"):
            client.create_deployment(scope, CreateDeploymentInput(slug="stolen", target=target))


def test_delete_removes_the_deployment(trained: Trained) -> None:
    base_url = trained.deploy("short-lived", authMode="none")
    trained.client.delete_deployment(trained.scope, "short-lived")
    assert "short-lived" not in [d.slug for d in trained.client.list_deployments(trained.scope)]
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=base_url, api_key="unused").models.list()


TRIAGE = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "bug", "account"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["category", "urgent"],
    "additionalProperties": False,
}


def test_a_structured_output_parses_against_its_schema(trained: Trained) -> None:
    """A random tiny model never writes JSON by itself: only constrained decoding makes it."""
    import jsonschema

    base_url = trained.deploy("json-bot", authMode="none")
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "triage", "schema": TRIAGE, "strict": True},
    }
    for seed in (1, 2, 3):
        answer = client.chat.completions.create(
            model="x",
            messages=HELLO,
            max_tokens=64,
            temperature=1.0,
            seed=seed,
            response_format=response_format,  # type: ignore[arg-type]
        )
        jsonschema.validate(json.loads(answer.choices[0].message.content or ""), TRIAGE)
        assert answer.choices[0].finish_reason == "stop"

    stream = client.chat.completions.create(
        model="x",
        messages=HELLO,
        max_tokens=64,
        stream=True,
        seed=4,
        temperature=1.0,
        response_format=response_format,  # type: ignore[arg-type]
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    jsonschema.validate(json.loads(text), TRIAGE)

    finished = 0
    for seed in range(1, 7):  # free-form keys may outrun the budget; every answer that ends parses
        anything = client.chat.completions.create(
            model="x",
            messages=HELLO,
            max_tokens=96,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_object"},
        )
        content = anything.choices[0].message.content or ""
        assert content.startswith("{")
        if anything.choices[0].finish_reason == "stop":
            finished += 1
            assert isinstance(json.loads(content), dict)
    assert finished, "no json_object answer ended within its budget"

    plain = client.chat.completions.create(model="x", messages=HELLO, max_tokens=16, seed=1)
    with pytest.raises(ValueError):
        json.loads(plain.choices[0].message.content or "")


def test_a_schema_that_cannot_be_used_is_a_bad_request(trained: Trained) -> None:
    base_url = trained.deploy("bad-schema-bot", authMode="none")
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 42}}}
    with pytest.raises(openai.BadRequestError, match="JSON Schema cannot be used"):
        client.chat.completions.create(model="x", messages=HELLO, response_format=broken)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="is unknown"):
        client.chat.completions.create(
            model="x",
            messages=HELLO,
            response_format={"type": "yaml"},  # type: ignore[arg-type,typeddict-item]
        )


def test_a_client_built_from_options_manages_deployments(trained: Trained) -> None:
    from arkor.cloud import CloudApiClientOptions

    options = CloudApiClientOptions(base_url=trained.plane.url, token=trained.client.token)
    with CloudApiClient.from_options(options) as client:
        trained.deploy("options-bot", authMode="none")
        assert "options-bot" in [d.slug for d in client.list_deployments(trained.scope)]
