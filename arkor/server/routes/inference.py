"""Chat with a base model or a job's adapter, answered by the inference worker process.

The plane resolves ``adapter`` to a folder of the job (its final adapter, or a
checkpoint, the newest when no step is given) and relays the worker's answer: OpenAI
``chat.completion.chunk`` frames ending with ``data: [DONE]``, or one ``chat.completion``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from arkor.cloud import ChatCompletion, InferenceRequest
from arkor.engine import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME
from arkor.server import _store as store
from arkor.server._db import in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses, not_found
from arkor.server._guards import REQUEST_ID_KEY
from arkor.server._plane import Plane
from arkor.server._store import ProjectRow
from arkor.server.deps import PlaneDep, ProjectDep
from arkor.server.routes.events import SSE_HEADERS

router = APIRouter(prefix="/v1/inference", tags=["inference"], responses=SCOPED_ERRORS)
logger = logging.getLogger("arkor.server")

_ADAPTER_CONFIG = "adapter_config.json"


@router.post("/chat", response_model=ChatCompletion, responses=error_responses(502, 503))
async def chat(
    request: Request, plane: PlaneDep, project: ProjectDep, body: InferenceRequest
) -> Response:
    base_model, base_revision, adapter_path, model_name = await in_thread(
        _resolve, plane=plane, project=project, body=body
    )
    payload: dict[str, Any] = {
        "baseModel": base_model,
        "baseRevision": base_revision,
        "adapterPath": str(adapter_path) if adapter_path else None,
        "model": model_name,
        "messages": [message.model_dump() for message in body.messages],
        "stream": body.stream,
    }
    for key, value in (
        ("temperature", body.temperature),
        ("topP", body.top_p),
        ("maxTokens", body.max_tokens),
    ):
        if value is not None:
            payload[key] = value
    upstream = await plane.inference.send(payload)
    if upstream.status_code != 200:
        raw = await upstream.aread()
        await upstream.aclose()
        message = _error_message(raw)
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


def _resolve(
    *, plane: Plane, project: ProjectRow, body: InferenceRequest
) -> tuple[str, str | None, Path | None, str]:
    """The base model, its Hub commit, the adapter folder and the model name the answer reports.

    An adapter's own base loads at the commit its job's manifest pinned, so a Hub branch
    that moved since never puts the adapter on other weights.
    """
    adapter = body.adapter
    if adapter is None:
        if not body.base_model:
            raise ApiError(422, "Give `adapter` (a job's adapter) or `baseModel` to chat with.")
        return body.base_model, None, None, body.base_model
    job = store.get_job(db=plane.db, job_id=adapter.job_id, project_id=project.id)
    if job is None:
        raise not_found(f"Job `{adapter.job_id}`")
    output = plane.settings.artifacts_dir / job.id
    if adapter.kind == "final":
        folder = output / ADAPTER_DIRNAME
        if not (folder / _ADAPTER_CONFIG).is_file():
            raise not_found(f"The final adapter of job `{job.id}` ({job.status})")
        name = f"{job.id}/final"
    else:
        folder = _checkpoint(output / CHECKPOINTS_DIRNAME, adapter.step, job.id)
        name = f"{job.id}/{folder.name}"
    config = job.to_wire().config
    base = body.base_model or config.model
    pin = config.model_pin
    revision = pin.revision if pin is not None and base == config.model else None
    return base, revision, folder, name


def _checkpoint(root: Path, step: int | None, job_id: str) -> Path:
    """``checkpoint-<step>``, or the newest checkpoint when ``step`` is None."""
    if step is not None:
        folder = root / f"checkpoint-{step}"
        if (folder / _ADAPTER_CONFIG).is_file():
            return folder
        raise not_found(f"Checkpoint {step} of job `{job_id}`")
    steps = [
        int(path.name.removeprefix("checkpoint-"))
        for path in root.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / _ADAPTER_CONFIG).is_file()
    ]
    if not steps:
        raise not_found(f"A checkpoint of job `{job_id}`")
    return root / f"checkpoint-{max(steps)}"


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error
    return raw.decode("utf-8", "replace")[:500] or "The inference worker failed."
