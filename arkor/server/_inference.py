"""The plane's side of inference: a long-lived worker process, started on first use.

The plane never imports torch or transformers; it resolves adapters to folders and
forwards requests to ``python -m arkor.engine.serve_inference``, an HTTP server on an
ephemeral loopback port guarded by a per-process secret. The worker announces its port
as one JSON line on stdout and exits when its stdin (held by the plane) closes, so it
never outlives the plane. Answers, streamed or not, are relayed as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from pathlib import Path

import httpx

from arkor._fs import open_private
from arkor._home import PRIVATE_UMASK
from arkor.server._errors import ApiError
from arkor.server._settings import Settings

SECRET_ENV = "ARKOR_INFERENCE_SECRET"
_STARTUP_TIMEOUT = 300.0
_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=None)


class InferenceWorker:
    """Starts, reaches and stops the inference process; one per plane."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._secret = secrets.token_urlsafe(32)
        self._process: asyncio.subprocess.Process | None = None
        self._url: str | None = None
        self._lock = asyncio.Lock()
        self._client = httpx.AsyncClient(timeout=_TIMEOUT)

    async def send(self, payload: dict[str, object], route: str = "/v1/chat") -> httpx.Response:
        """POST a request (a generation, or ``/v1/eval``); the response is open for streaming
        and must be closed."""
        url = await self._endpoint()
        request = self._client.build_request(
            "POST",
            f"{url}{route}",
            json=payload,
            headers={"Authorization": f"Bearer {self._secret}"},
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TransportError as error:
            raise ApiError(503, f"The inference worker did not answer: {error}.") from error

    async def stop(self) -> None:
        """Close the worker's stdin (it exits on EOF) and wait; kill it if it lingers."""
        await self._client.aclose()
        process, self._process = self._process, None
        await stop_child(process, 10.0)

    async def _endpoint(self) -> str:
        async with self._lock:
            process = self._process
            if process is not None and process.returncode is None and self._url is not None:
                return self._url
            self._url = None
            self._process = process = await self._start()
            assert process.stdout is not None
            try:
                line = await asyncio.wait_for(process.stdout.readline(), _STARTUP_TIMEOUT)
            except TimeoutError:
                process.kill()
                raise ApiError(503, "The inference worker did not start in time.") from None
            announcement = _parse(line)
            if "port" not in announcement:
                await process.wait()
                detail = announcement.get("error") or (
                    f"it exited with code {process.returncode}; see {self._log_path}"
                )
                raise ApiError(503, f"The inference worker could not start: {detail}")
            self._url = f"http://127.0.0.1:{announcement['port']}"
            return self._url

    @property
    def _log_path(self) -> Path:
        return self.settings.logs_dir / "inference.log"

    async def _start(self) -> asyncio.subprocess.Process:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        with open_private(self._log_path, "ab") as log:
            try:
                return await asyncio.create_subprocess_exec(
                    *self.settings.inference_command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    env={
                        **os.environ,
                        "ARKOR_HOME": str(self.settings.home),  # its model store
                        SECRET_ENV: self._secret,
                    },
                    start_new_session=True,
                    umask=PRIVATE_UMASK,
                )
            except OSError as error:
                raise ApiError(503, f"The inference worker could not start: {error}.") from error


def _parse(line: bytes) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def worker_error(raw: bytes) -> str:
    """The message of an inference worker's error answer (its JSON ``error``, else its text)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error
    return raw.decode("utf-8", "replace")[:500] or "The inference worker failed."


async def stop_child(process: asyncio.subprocess.Process | None, timeout: float) -> None:
    """Stop a helper process that exits when its stdin closes; kill it after ``timeout`` s."""
    if process is None or process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
