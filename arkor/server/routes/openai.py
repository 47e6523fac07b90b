"""Each deployment's OpenAI-compatible API: ``/d/<slug>/v1/chat/completions`` and ``/models``.

The host form ``http://<slug>.localhost:<port>/v1/...`` reaches the same routes: the
``DeploymentHost`` middleware rewrites it to the path form. Errors use OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) so OpenAI's clients raise their
usual exceptions. Every answer is recorded as a run, per the deployment's retention.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from arkor.cloud import ChatCompletion, utc_now
from arkor.cloud._api_models import ChatCompletionRequest, OpenAIError, OpenAIErrorDetail
from arkor.cloud._deployments import AdapterTarget, DeploymentRun
from arkor.server import _deployments as deployments
from arkor.server._db import in_thread
from arkor.server._deployments import DeploymentRow
from arkor.server._errors import ApiError, error_responses
from arkor.server._guards import REQUEST_ID_KEY
from arkor.server._inference import worker_error
from arkor.server._plane import Plane
from arkor.server._store import new_id
from arkor.server._targets import ServedModel, base_model, job_adapter
from arkor.server.deps import PlaneDep
from arkor.server.routes.events import SSE_HEADERS

router = APIRouter(
    prefix="/d/{slug}/v1", tags=["deployments (OpenAI API)"], responses=error_responses(422)
)
logger = logging.getLogger("arkor.server")

_JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema()}},
    }
}
_OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIError, "description": description}
    for status, description in (
        (400, "The request is invalid or asks for something not supported (or a bad Host)."),
        (401, "A missing, wrong or revoked API key."),
        (403, "The deployment is disabled."),
        (404, "No such deployment, or its model is gone."),
        (502, "The inference worker failed to answer."),
    )
}

AuthorizationHeader = Annotated[str | None, Header()]
ApiKeyHeader = Annotated[str | None, Header(alias="x-api-key")]


def openai_error(
    status: int, message: str, *, code: str, kind: str = "invalid_request_error"
) -> JSONResponse:
    """An error as OpenAI sends one."""
    body = OpenAIError(error=OpenAIErrorDetail(message=message, type=kind, code=code))
    return JSONResponse(body.to_wire(), status_code=status)


class _Refused(Exception):
    """A request answered with an OpenAI error before any generation."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _admit(
    plane: Plane, slug: str, authorization: str | None, api_key: str | None
) -> DeploymentRow:
    """The deployment, once the caller's key (when it needs one) and its state let them in."""
    deployment = deployments.deployment_by_slug(db=plane.db, slug=slug)
    if deployment is None:
        raise _Refused(
            openai_error(404, f"There is no deployment `{slug}`.", code="deployment_not_found")
        )
    if deployment.auth_mode == "fixed_api_key":
        key = api_key
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip()
        if not key or not deployments.use_key(db=plane.db, deployment=deployment, plaintext=key):
            raise _Refused(
                openai_error(
                    401,
                    "Incorrect or revoked API key. Send a key of this deployment as "
                    "`Authorization: Bearer <key>` or `x-api-key: <key>`; make one with "
                    f"`arkor endpoints keys create {slug}`.",
                    code="invalid_api_key",
                )
            )
    if not deployment.enabled:
        raise _Refused(
            openai_error(
                403,
                f"The deployment `{slug}` is disabled. Enable it with "
                f"`arkor endpoints update {slug} --enable`.",
                code="deployment_disabled",
                kind="permission_error",
            )
        )
    return deployment


def _served(plane: Plane, deployment: DeploymentRow) -> ServedModel:
    target = deployment.target
    if isinstance(target, AdapterTarget):
        return job_adapter(plane=plane, project_id=deployment.project_id, adapter=target.adapter)
    return base_model(target.base_model)


@router.get("/models", responses=_OPENAI_ERRORS)
async def list_models(
    slug: str,
    plane: PlaneDep,
    authorization: AuthorizationHeader = None,
    api_key: ApiKeyHeader = None,
) -> Response:
    """The one model this deployment serves, named by its slug."""
    try:
        deployment = await in_thread(
            _admit, plane=plane, slug=slug, authorization=authorization, api_key=api_key
        )
    except _Refused as refused:
        return refused.response
    created = int(time.mktime(time.strptime(deployment.created_at[:19], "%Y-%m-%dT%H:%M:%S")))
    model = {"id": slug, "object": "model", "created": created, "owned_by": "arkor"}
    return JSONResponse({"object": "list", "data": [model]})


@router.post("/chat/completions", responses=_OPENAI_ERRORS, openapi_extra=_JSON_BODY)
async def chat_completions(
    slug: str,
    request: Request,
    plane: PlaneDep,
    authorization: AuthorizationHeader = None,
    api_key: ApiKeyHeader = None,
) -> Response:
    """Answer like OpenAI's chat completions, streamed (SSE) or whole."""
    started = time.perf_counter()
    try:
        deployment = await in_thread(
            _admit, plane=plane, slug=slug, authorization=authorization, api_key=api_key
        )
        body = _parse(await request.body())
        served = await in_thread(_served, plane=plane, deployment=deployment)
    except _Refused as refused:
        return refused.response
    except ApiError as error:  # the target's job or adapter is gone
        return openai_error(error.status, error.message, code="model_not_found")
    cold = deployment.id not in plane.served_deployments
    plane.served_deployments.add(deployment.id)
    run = _RunRecord(plane, deployment, body, started, cold)
    payload = served.payload(
        messages=[{"role": _role(m.role), "content": m.text()} for m in body.messages],
        stream=body.stream,
        temperature=body.temperature,
        topP=body.top_p,
        maxTokens=body.max_completion_tokens or body.max_tokens,
        seed=body.seed,
        responseFormat=body.response_format,
    )
    upstream = await plane.inference.send(payload)
    if upstream.status_code != 200:
        raw = await upstream.aread()
        await upstream.aclose()
        return await _upstream_failed(request, run, upstream.status_code, raw)
    if body.stream:
        return StreamingResponse(
            _relay(upstream, run, slug), media_type="text/event-stream", headers=SSE_HEADERS
        )
    raw = await upstream.aread()
    await upstream.aclose()
    completion = ChatCompletion.model_validate_json(raw).model_copy(update={"model": slug})
    usage = completion.usage
    await run.finish(
        200, completion.choices[0].message.content, usage.prompt_tokens, usage.completion_tokens
    )
    return Response(json.dumps(completion.to_wire()), media_type="application/json")


def _parse(raw: bytes) -> ChatCompletionRequest:
    try:
        body = ChatCompletionRequest.model_validate_json(raw or b"null")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _Refused(
            openai_error(400, f"Invalid request: {where}: {first['msg']}.", code="invalid_request")
        ) from None
    problem = body.unsupported()
    if problem is not None:
        raise _Refused(openai_error(400, problem, code="unsupported"))
    return body


def _role(role: str) -> str:
    """OpenAI's newer ``developer`` role is the system prompt for a chat template."""
    return "system" if role == "developer" else role


class _RunRecord:
    """One request's run, written when its answer is complete (or failed)."""

    def __init__(
        self,
        plane: Plane,
        deployment: DeploymentRow,
        body: ChatCompletionRequest,
        started: float,
        cold: bool,
    ) -> None:
        self.plane = plane
        self.deployment = deployment
        self.body = body
        self.started = started
        self.cold = cold

    async def finish(
        self,
        http_status: int,
        answer: str | None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        error: str | None = None,
    ) -> None:
        run = DeploymentRun(
            id=new_id("run"),
            created_at=utc_now(),
            status="ok" if error is None else "error",
            http_status=http_status,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 1),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            stream=self.body.stream,
            cold_start=self.cold,
            messages=[{"role": m.role, "content": m.text()} for m in self.body.messages],
            answer=answer,
            error=error,
        )
        try:
            await in_thread(
                deployments.add_run, db=self.plane.db, deployment=self.deployment, run=run
            )
        except Exception:  # a run that cannot be kept must not fail the answer already given
            logger.exception("Could not record a run of deployment %s", self.deployment.slug)


async def _upstream_failed(
    request: Request, run: _RunRecord, status: int, raw: bytes
) -> JSONResponse:
    message = worker_error(raw)
    if status == 422:  # the worker cannot answer this request (the model is missing, ...)
        await run.finish(400, None, error=message)
        return openai_error(400, message, code="invalid_request")
    request_id = request.scope[REQUEST_ID_KEY]
    logger.error("Request %s: the inference worker answered %d: %s", request_id, status, message)
    await run.finish(502, None, error=message)
    return openai_error(
        502,
        "The inference worker failed to answer; the plane's log has the cause under request id "
        f"{request_id}.",
        code="upstream_error",
        kind="server_error",
    )


async def _relay(upstream: httpx.Response, run: _RunRecord, slug: str) -> AsyncIterator[bytes]:
    """Pass the worker's frames on (named after the deployment), noting the answer as it goes.

    The run is recorded before the closing ``[DONE]`` frame goes out, so a client that has
    its whole answer finds the run listed.
    """
    answer: list[str] = []
    usage: dict[str, Any] = {}
    buffer = b""
    recorded = False
    try:
        async for chunk in upstream.aiter_raw():
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if frame.strip() == b"data: [DONE]" and not recorded:
                    recorded = True
                    await run.finish(
                        200,
                        "".join(answer),
                        usage.get("prompt_tokens"),
                        usage.get("completion_tokens"),
                    )
                yield _renamed(frame, slug, answer, usage) + b"\n\n"
        if buffer:
            yield buffer
    finally:
        await upstream.aclose()
        if not recorded:
            await run.finish(
                200,
                "".join(answer),
                error="the answer ended early (the client left, or the worker)",
            )


def _renamed(frame: bytes, slug: str, answer: list[str], usage: dict[str, Any]) -> bytes:
    """A chunk frame with ``model`` set to the slug; its text and usage noted."""
    if not frame.startswith(b"data: {"):
        return frame
    chunk = json.loads(frame[len(b"data: ") :])
    chunk["model"] = slug
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            answer.append(content)
    if chunk.get("usage"):
        usage.update(chunk["usage"])
    return b"data: " + json.dumps(chunk).encode()
