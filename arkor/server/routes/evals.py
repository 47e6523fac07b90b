"""On-demand evaluation of a finished job: ``POST /v1/jobs/{id}/evals``.

The job's worker wrote its held-out rows (``eval/held-out.jsonl``) when training ended;
this route has the inference worker answer them again with the base and the final
adapter (or a checkpoint's), with the same engine code and greedy settings the run used.
The answer is ``application/x-ndjson``: ``{"type": "progress", "done", "total"}`` lines
as batches finish, then ``{"type": "event", "event": …}`` (the ``eval.completed`` event,
``requested`` set, stored with the job's events though the job has ended) or
``{"type": "error", "message"}``. One such eval runs per job at a time on a plane.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError

from arkor.cloud import AdapterRef, EvalCompleted, TrainingCompleted, utc_now
from arkor.cloud._api_models import EvalFailure, EvalProgress, EvalRequest, EvalResult
from arkor.config import Trainer
from arkor.server import _store as store
from arkor.server._db import in_thread
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses
from arkor.server._guards import REQUEST_ID_KEY
from arkor.server._inference import worker_error
from arkor.server._plane import Plane
from arkor.server._targets import ServedModel, job_adapter
from arkor.server.deps import JobDep, PlaneDep

router = APIRouter(prefix="/v1/jobs", tags=["evals"], responses=SCOPED_ERRORS)
logger = logging.getLogger("arkor.server")

HELD_OUT_ARTIFACT = "eval/held-out.jsonl"
"""Where a job's worker writes its held-out rows, under the job's artifacts."""
NDJSON = "application/x-ndjson"
_COMPLETED = TypeAdapter[TrainingCompleted](TrainingCompleted)
_DEFAULT_SEED: int = Trainer.model_fields["seed"].default


@router.post(
    "/{job_id}/evals",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {NDJSON: {}},
            "description": "Progress lines, then the stored `eval.completed` event (or an error).",
        },
        **error_responses(409, 502, 503),
    },
)
async def run_eval(
    request: Request, plane: PlaneDep, job: JobDep, body: EvalRequest
) -> StreamingResponse:
    """Evaluate the job's final adapter (or checkpoint ``checkpoint``) against its base again."""
    payload = await in_thread(_payload, plane=plane, job=job, body=body)
    if job.id in plane.running_evals:
        raise ApiError(
            409,
            f"An eval of job `{job.id}` is already running; wait for it to finish, then ask again.",
        )
    plane.running_evals.add(job.id)
    try:
        upstream = await plane.inference.send(payload, route="/v1/eval")
        if upstream.status_code != 200:
            raw = await upstream.aread()
            await upstream.aclose()
            raise _upstream_error(request, upstream.status_code, worker_error(raw))
    except BaseException:
        plane.running_evals.discard(job.id)
        raise
    return StreamingResponse(
        _relay(plane, job.id, upstream),
        media_type=NDJSON,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _payload(*, plane: Plane, job: store.JobRow, body: EvalRequest) -> dict[str, Any]:
    """The inference worker's ``/v1/eval`` body; 409 or 404 when there is nothing to evaluate."""
    config = job.to_wire().config
    spec = config.eval
    if spec is None:
        raise ApiError(
            409,
            f"Job `{job.id}` was not set up to evaluate: its config has no eval block. Add "
            "`[trainer.eval]` to arkor.toml, then build and start a new run.",
        )
    if job.status != "completed":
        raise ApiError(
            409,
            f"Job `{job.id}` is {job.status}; only a completed job can be evaluated (its "
            "adapter and held-out rows are written when training completes).",
        )
    held_out = held_out_path(plane, job.id)
    if not held_out.is_file():
        raise ApiError(
            409,
            f"Job `{job.id}` has no held-out rows ({HELD_OUT_ARTIFACT} is not among its "
            "artifacts): the run did not write them, so there is nothing to evaluate on.",
        )
    kind = "final" if body.checkpoint is None else "checkpoint"
    served: ServedModel = job_adapter(
        plane=plane,
        project_id=job.project_id,
        adapter=AdapterRef(kind=kind, job_id=job.id, step=body.checkpoint),
    )
    return {
        "baseModel": served.base_model,
        "baseRevision": served.base_revision,
        "adapterPath": str(served.adapter_path),
        "heldOutPath": str(held_out),
        "spec": spec.to_wire(),
        "rows": body.rows if body.rows is not None else spec.rows,
        "checkpoint": body.checkpoint,
        "step": body.checkpoint if body.checkpoint is not None else _final_step(plane, job),
        "seed": config.seed if config.seed is not None else _DEFAULT_SEED,
        "jobId": job.id,
    }


def _final_step(plane: Plane, job: store.JobRow) -> int | None:
    """The step training completed at, as its ``training.completed`` event says."""
    stored = store.event_data(db=plane.db, job_id=job.id, event_type="training.completed")
    if not stored:
        return None
    step = (_COMPLETED.validate_json(stored[-1]).metrics or {}).get("step")
    return step if isinstance(step, int) else None


def _upstream_error(request: Request, status: int, message: str) -> ApiError:
    if status == 422:  # the worker can't run this eval (an unreadable held-out file, …)
        return ApiError(422, message)
    request_id = request.scope[REQUEST_ID_KEY]
    logger.error("Request %s: the inference worker answered %d: %s", request_id, status, message)
    return ApiError(
        502,
        "The inference worker failed to run the eval; the plane's log has the cause under "
        f"request id {request_id}.",
        requestId=request_id,
    )


async def _relay(plane: Plane, job_id: str, upstream: httpx.Response) -> AsyncIterator[bytes]:
    """Pass progress on as it comes; store the event and send it as the last line."""
    try:
        async for line in upstream.aiter_lines():
            if not line.strip():
                continue
            try:
                message = json.loads(line)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                logger.error(
                    "Job %s: the inference worker sent an eval line %r", job_id, line[:200]
                )
                yield _line(EvalFailure(message="The inference worker sent an unreadable answer."))
                return
            if kind == "progress":
                yield _line(EvalProgress.model_validate(message))
            elif kind == "event":
                yield _line(await _store(plane, job_id, message.get("event")))
                return
            else:
                text = message.get("message") or "The eval failed in the inference worker."
                yield _line(EvalFailure(message=str(text)))
                return
        yield _line(
            EvalFailure(
                message="The inference worker stopped before the eval finished; its log "
                f"({plane.settings.logs_dir / 'inference.log'}) says why."
            )
        )
    except ValidationError as error:
        logger.error(
            "Job %s: the inference worker sent an eval line that doesn't fit: %s", job_id, error
        )
        yield _line(EvalFailure(message="The inference worker sent an answer that does not fit."))
    finally:
        await upstream.aclose()
        plane.running_evals.discard(job_id)


async def _store(plane: Plane, job_id: str, event: Any) -> EvalResult | EvalFailure:
    """Store the worker's event with the job, marked ``requested``; the stored form comes back."""
    if not isinstance(event, dict):
        return EvalFailure(message="The inference worker sent an answer that does not fit.")
    data = {**event, "jobId": job_id, "requested": True, "timestamp": utc_now()}
    wire = EvalCompleted.model_validate(data).to_wire()
    ack = await in_thread(store.append_requested_eval, db=plane.db, job_id=job_id, data=wire)
    if ack is None:
        return EvalFailure(message=f"Job `{job_id}` was deleted while it was evaluated.")
    plane.hub.notify(job_id)
    return EvalResult(event=EvalCompleted.model_validate(wire))


def _line(message: EvalProgress | EvalResult | EvalFailure) -> bytes:
    return (json.dumps(message.to_wire(), ensure_ascii=False) + "\n").encode()


def held_out_path(plane: Plane, job_id: str) -> Path:
    """The job's held-out rows file on this plane's disk."""
    return plane.settings.artifacts_dir / job_id / HELD_OUT_ARTIFACT
