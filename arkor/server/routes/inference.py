"""Chat with a base model or a job's adapter, answered by the inference worker process.

The plane resolves ``adapter`` to a folder of the job (its final adapter, or a
checkpoint, the newest when no step is given) and relays the worker's answer: OpenAI
``chat.completion.chunk`` frames ending with ``data: [DONE]``, or one ``chat.completion``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from arkor.cloud import ChatCompletion, InferenceRequest
from arkor.server._db import in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses
from arkor.server._guards import REQUEST_ID_KEY
from arkor.server._inference import worker_error
from arkor.server._plane import Plane
from arkor.server._store import ProjectRow
from arkor.server._targets import ServedModel, base_model, job_adapter
from arkor.server.deps import PlaneDep, ProjectDep
from arkor.server.routes.events import SSE_HEADERS

router = APIRouter(prefix="/v1/inference", tags=["inference"], responses=SCOPED_ERRORS)
logger = logging.getLogger("arkor.server")


@router.post("/chat", response_model=ChatCompletion, responses=error_responses(502, 503))
async def chat(
    request: Request, plane: PlaneDep, project: ProjectDep, body: InferenceRequest
) -> Response:
    served = await in_thread(_resolve, plane=plane, project=project, body=body)
    payload = served.payload(
        messages=[message.model_dump() for message in body.messages],
        stream=body.stream,
        temperature=body.temperature,
        topP=body.top_p,
        maxTokens=body.max_tokens,
    )
    upstream = await plane.inference.send(payload)
    if upstream.status_code != 200:
        raw = await upstream.aread()
        await upstream.aclose()
        message = worker_error(raw)
        if upstream.status_code == 422:  # the request can't be answered (an unknown model, …)
            raise ApiError(422, message)
        request_id = request.scope[REQUEST_ID_KEY]
        logger.error(
            "Request %s: the inference worker answered %d: %s",
            request_id,
            upstream.status_code,
            message,
        )
        raise ApiError(
            502,
            "The inference worker failed to answer; the plane's log has the cause under "
            f"request id {request_id}.",
            requestId=request_id,
        )
    if body.stream:
        return StreamingResponse(
            _relay(upstream), media_type="text/event-stream", headers=SSE_HEADERS
        )
    raw = await upstream.aread()
    await upstream.aclose()
    completion = ChatCompletion.model_validate_json(raw)
    return Response(json.dumps(completion.to_wire()), media_type="application/json")


async def _relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """Pass the worker's frames on as they come; closing either side closes the other."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()


def _resolve(*, plane: Plane, project: ProjectRow, body: InferenceRequest) -> ServedModel:
    """The model that answers: ``adapter`` on its base (or on ``baseModel``), or ``baseModel``."""
    if body.adapter is None:
        if not body.base_model:
            raise ApiError(422, "Give `adapter` (a job's adapter) or `baseModel` to chat with.")
        return base_model(body.base_model)
    return job_adapter(
        plane=plane, project_id=project.id, adapter=body.adapter, base=body.base_model
    )
