"""Sample rows as training tokenizes and masks them: tokens per row, and which are learned.

Tokenizing needs transformers, which the plane process never imports (the ML stack lives
in worker processes). The work runs in a helper process, ``python -m
arkor.engine._inspect``, started on first use and stopped with the plane, which keeps
the tokenizers it loaded; requests take turns in it. Bodies are held to the plane's JSON
limit (``ARKOR_MAX_BODY_BYTES``, 1 MiB by default): 2000 short chat rows fit, long ones
may not, and a body over it is answered 413, so a caller sends fewer rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from arkor._fs import open_private
from arkor._home import PRIVATE_UMASK
from arkor.cloud import DataInspection, DataInspectRequest
from arkor.engine._deps import LOCAL_EXTRA_HINT, MissingExtraError, require_local
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses
from arkor.server._guards import REQUEST_ID_KEY
from arkor.server._inference import stop_child
from arkor.server._settings import Settings
from arkor.server.deps import PlaneDep, ProjectDep

HELPER_COMMAND = (sys.executable, "-m", "arkor.engine._inspect")
_ANSWER_LIMIT = 64 << 20
"""The longest answer line read from the helper: 2000 rows and a long detail row fit."""
_STOP_TIMEOUT = 10.0
logger = logging.getLogger("arkor.server")


class Inspector:
    """Starts the helper process, hands it one request at a time, and stops it; one per plane."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def inspect(self, body: DataInspectRequest, request_id: str) -> DataInspection:
        """The helper's answer to ``body``; an error of the rows or the model is a 422."""
        try:
            require_local()
        except MissingExtraError as error:
            raise ApiError(
                503,
                f"This plane cannot inspect data: {error} Inspecting tokenizes the rows with the "
                f"model's tokenizer, so the plane's machine needs `{LOCAL_EXTRA_HINT}`.",
            ) from None
        line = body.model_dump_json(by_alias=True, exclude_none=True).encode()
        # shielded: a caller who hangs up must not leave its answer in the pipe for the next
        answer = await asyncio.shield(self._exchange(line))
        if isinstance(message := answer.get("error"), str):
            raise ApiError(422, message)
        if "inspection" in answer:
            return DataInspection.model_validate(answer["inspection"])
        logger.error(
            "Request %s: inspecting data failed: %s", request_id, answer.get("failure", answer)
        )
        raise ApiError(
            502,
            "The process that tokenizes rows for inspection failed to answer; the plane's log "
            f"has the cause under request id {request_id}.",
            requestId=request_id,
        )

    async def stop(self) -> None:
        """Close the helper's stdin (it exits on EOF) and wait; kill it if it lingers."""
        process, self._process = self._process, None
        await stop_child(process, _STOP_TIMEOUT)

    async def _exchange(self, line: bytes) -> dict[str, Any]:
        async with self._lock:
            process = await self._started()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(line + b"\n")
                await process.stdin.drain()
                answer = await process.stdout.readline()
            except (ConnectionError, ValueError):  # a dead helper, or an answer over the limit
                answer = b""
            if not answer.endswith(b"\n"):
                await self.stop()
                raise ApiError(
                    503,
                    "The process that tokenizes rows for inspection stopped before it answered "
                    "(out of memory, or killed); it starts again on the next request. Its log "
                    f"is {self._log_path}. Send fewer or shorter rows if this repeats.",
                )
        parsed = json.loads(answer)
        return parsed if isinstance(parsed, dict) else {}

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is not None and self._process.returncode is None:
            return self._process
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        with open_private(self._log_path, "ab") as log:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    *HELPER_COMMAND,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    env={**os.environ, "ARKOR_HOME": str(self.settings.home)},  # its model store
                    start_new_session=True,
                    umask=PRIVATE_UMASK,
                    limit=_ANSWER_LIMIT,
                )
            except OSError as error:
                raise ApiError(
                    503, f"The process that tokenizes rows for inspection could not start: {error}."
                ) from error
        return self._process

    @property
    def _log_path(self) -> Path:
        return self.settings.logs_dir / "inspect.log"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Stop the helper process with the plane (it is started by the first request)."""
    try:
        yield
    finally:
        inspector = getattr(app.state, "data_inspector", None)
        if isinstance(inspector, Inspector):
            await inspector.stop()


router = APIRouter(prefix="/v1/data", tags=["data"], responses=SCOPED_ERRORS, lifespan=_lifespan)


@router.post(
    "/inspect",
    response_model=DataInspection,
    response_model_exclude_none=True,
    responses=error_responses(502, 503),
)
async def inspect_data(
    request: Request, plane: PlaneDep, project: ProjectDep, body: DataInspectRequest
) -> DataInspection:
    """Tokenize and mask ``rows`` as a job with these settings would, and count each row.

    ``detail`` picks the row whose tokens come back one by one. A row training would refuse
    carries its ``error``; the call fails only when no row can be used (a format that fits
    none, a model that cannot be loaded: 422). The caller's project scopes the call, though
    nothing of the project is read.
    """
    state = request.app.state
    inspector = getattr(state, "data_inspector", None)
    if not isinstance(inspector, Inspector):
        inspector = state.data_inspector = Inspector(plane.settings)
    return await inspector.inspect(body, request.scope[REQUEST_ID_KEY])
