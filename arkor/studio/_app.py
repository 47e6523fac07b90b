"""Studio's ASGI app: the pages, the static files and the ``/api`` routes, behind the guards.

Every page path serves the same small HTML shell; the browser code in ``static/`` draws
the page and calls ``/api``. The routes are thin: parse, call :class:`Studio` or the
plane's client, answer. Handlers are plain functions (FastAPI runs them in its thread
pool), since the client is synchronous; streams relay the plane's bytes as they come.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException

from arkor.cloud import (
    AdapterRef,
    AdapterTarget,
    AuthError,
    CloudApiError,
    ConflictError,
    CreateDeploymentInput,
    CreateDeploymentKeyInput,
    DeploymentDto,
    NotFoundError,
    PlaneUnreachableError,
    UpdateDeploymentInput,
)
from arkor.config import ConfigError
from arkor.errors import ArkorError, UsageError
from arkor.studio._guards import LoopbackHost, PageHeaders, StudioToken
from arkor.studio._studio import NotLocalDataError, Studio

logger = logging.getLogger("arkor.studio")

PAGES = ("/", "/runs", "/runs/{job_id}", "/new", "/playground", "/endpoints", "/data")
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


class _Body(BaseModel):
    """A Studio request body: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ConfigChoice(_Body):
    config: str | None = None
    """A config file of the project (as ``/api/configs`` names it); None: the default one."""
    overrides: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list, max_length=100
    )


class ChatTargetChoice(_Body):
    kind: Literal["base", "final", "checkpoint", "endpoint"]
    model: str | None = None
    run: str | None = None
    step: int | None = Field(default=None, ge=0)
    slug: str | None = None


class ChatTurn(_Body):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ChatAsk(_Body):
    target: ChatTargetChoice
    messages: list[ChatTurn] = Field(min_length=1, max_length=500)
    temperature: float | None = Field(default=None, ge=0, le=5)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)


class EndpointChoice(_Body):
    """A deployment's target: the plane's wire shape, or a run (and a checkpoint) of this project."""

    slug: str | None = None
    target: dict[str, Any] | None = None
    run: str | None = None
    step: int | None = Field(default=None, ge=0)
    auth_mode: Literal["none", "fixed_api_key"] | None = None
    enabled: bool | None = None


class EvalChoice(_Body):
    """What ``arkor eval`` takes: a checkpoint (None: the final adapter) and how many rows."""

    checkpoint: int | None = Field(default=None, ge=0)
    rows: int | None = Field(default=None, ge=1, le=1000)


class KeyLabel(_Body):
    label: str | None = Field(default=None, max_length=100)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, **extra}},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _install_error_handlers(app: FastAPI) -> None:
    """One JSON error shape for every failure; the message says what to do."""

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, error: ConfigError) -> JSONResponse:
        return _error(422, str(error), issues=error.issues_json())

    @app.exception_handler(ArkorError)
    async def arkor_error(request: Request, error: ArkorError) -> JSONResponse:
        message = error.message if isinstance(error, CloudApiError) else str(error)
        if isinstance(error, NotLocalDataError | ConflictError):
            return _error(409, message)
        if isinstance(error, NotFoundError):
            return _error(404, message)
        if isinstance(error, UsageError):
            return _error(400, message)
        if isinstance(error, PlaneUnreachableError):
            return _error(503, message)
        if isinstance(error, AuthError):  # Studio's own identity on the plane, not the browser's
            return _error(502, f"The control plane refused Studio's credentials: {message}")
        if isinstance(error, CloudApiError) and error.status in (400, 413, 422):
            return _error(error.status, message)
        return _error(500, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    @app.exception_handler(ValidationError)
    async def invalid_wire_value(request: Request, error: ValidationError) -> JSONResponse:
        """A body Studio passes on to the plane, refused by the plane's own wire model."""
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first['msg']}" if where else str(first["msg"]))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"msg": "invalid request", "loc": ()}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(422, f"{where}: {first['msg']}" if where else str(first["msg"]))


@cache
def _static_file(name: str) -> bytes | None:
    folder = resources.files("arkor.studio") / "static"
    target = folder / name
    if "/" in name or name.startswith(".") or not target.is_file():
        return None
    return target.read_bytes()


@cache
def _asset_hash(name: str) -> str:
    data = _static_file(name) or b""
    return hashlib.sha256(data).hexdigest()[:12]


def _shell(token: str) -> str:
    from arkor._version import __version__

    template = (_static_file("index.html") or b"").decode("utf-8")
    return (
        template.replace("{{token}}", token)
        .replace("{{version}}", __version__)
        .replace("{{css}}", f"/static/style.css?v={_asset_hash('style.css')}")
        .replace("{{js}}", f"/static/app.js?v={_asset_hash('app.js')}")
    )


def create_app(studio: Studio, token: str) -> Any:
    """Studio's ASGI app for ``studio``'s project, guarded by this launch's ``token``."""
    app = FastAPI(
        title="Arkor Studio",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    _install_error_handlers(app)
    shell = _shell(token)

    def page() -> HTMLResponse:
        return HTMLResponse(shell, headers={"cache-control": "no-store"})

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        """A static file; the modules it imports carry no hash, so the browser revalidates."""
        data = _static_file(name)
        suffix = name[name.rfind(".") :] if "." in name else ""
        if data is None or suffix not in STATIC_TYPES:
            return _error(404, f"No static file `{name}`.")
        etag = f'"{_asset_hash(name)}"'
        cache = (
            "public, max-age=31536000, immutable" if request.query_params.get("v") else "no-cache"
        )
        headers = {"cache-control": cache, "etag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=STATIC_TYPES[suffix], headers=headers)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    # --- project, runs ------------------------------------------------------------

    @app.get("/api/project")
    def project() -> dict[str, Any]:
        return studio.project()

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return studio.runs()

    @app.post("/api/runs", status_code=201)
    def start_run(choice: ConfigChoice) -> dict[str, Any]:
        return studio.start(choice.config, choice.overrides)

    @app.get("/api/runs/{job_id}")
    def run(job_id: str) -> dict[str, Any]:
        return studio.run(job_id)

    @app.post("/api/runs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        return studio.cancel(job_id)

    @app.get("/api/runs/{job_id}/events")
    def events(
        job_id: str,
        after: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> StreamingResponse:
        """The plane's event stream of the run, relayed as it comes (see api docs: [stream])."""
        resume = after
        if last_event_id is not None and last_event_id.strip().isdigit():
            resume = int(last_event_id)
        opened = studio.client.stream_events(studio.scope, job_id, last_event_id=resume)
        return _relay(opened, "text/event-stream")

    @app.get("/api/runs/{job_id}/artifacts/{path:path}")
    def artifact(job_id: str, path: str) -> StreamingResponse:
        opened = studio.client.stream_artifact(studio.scope, job_id, path)
        name = path.rsplit("/", 1)[-1].replace('"', "")
        return _relay(
            opened,
            "application/octet-stream",
            {"content-disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/runs/{job_id}/evals")
    def evals(job_id: str) -> dict[str, Any]:
        return studio.evals(job_id)

    @app.post("/api/runs/{job_id}/evals")
    def evaluate(job_id: str, choice: Annotated[EvalChoice | None, Body()] = None) -> Response:
        """Run the eval again: ``progress`` frames, then ``eval`` (as GET describes it) or ``error``.

        The plane's refusals (no eval block, not completed, an unknown checkpoint) come
        before its first progress line, so they answer as JSON errors.
        """
        choice = choice or EvalChoice()
        frames = _in_thread(
            lambda progress: studio.evaluate(
                job_id, checkpoint=choice.checkpoint, rows=choice.rows, on_progress=progress
            )
        )
        first = next(frames)
        if isinstance(first, BaseException):
            raise first
        return StreamingResponse(
            _eval_frames(first, frames),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # --- new run --------------------------------------------------------------------

    @app.get("/api/configs")
    def configs() -> dict[str, Any]:
        return studio.configs()

    @app.post("/api/validate")
    def validate(choice: ConfigChoice) -> dict[str, Any]:
        return studio.validate(choice.config, choice.overrides)

    @app.post("/api/build")
    def build(choice: ConfigChoice) -> dict[str, Any]:
        return studio.build(choice.config, choice.overrides)

    # --- playground -----------------------------------------------------------------

    @app.get("/api/targets")
    def targets() -> dict[str, Any]:
        return studio.targets()

    @app.get("/api/system-prompt")
    def system_prompt(run: str | None = None) -> dict[str, Any]:
        return {"systemPrompt": studio.system_prompt(run)}

    @app.post("/api/chat")
    def chat(ask: ChatAsk) -> StreamingResponse:
        from arkor.sdk._chat import ChatOptions, resolve_target

        choice = ask.target
        if choice.kind == "base":
            target = resolve_target(
                studio.session, base_model=_required(choice.model, "target.model")
            )
        elif choice.kind == "endpoint":
            target = resolve_target(studio.session, endpoint=_required(choice.slug, "target.slug"))
        else:
            step = _required(choice.step, "target.step") if choice.kind == "checkpoint" else None
            target = resolve_target(
                studio.session, job_id=_required(choice.run, "target.run"), step=step
            )
        options = ChatOptions(temperature=ask.temperature, max_tokens=ask.max_tokens)
        messages = [turn.model_dump() for turn in ask.messages]
        stream = target.stream(studio.session, messages, options)
        chunks = stream.__enter__()  # the plane's refusals surface here, as JSON errors
        return StreamingResponse(
            _answer_frames(stream, chunks),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # --- endpoints ------------------------------------------------------------------

    def described(deployment: DeploymentDto) -> dict[str, Any]:
        return {**deployment.to_wire(), "model": deployment.slug}

    @app.get("/api/endpoints")
    def endpoints() -> dict[str, Any]:
        return {"deployments": [described(d) for d in studio.client.list_deployments(studio.scope)]}

    @app.post("/api/endpoints", status_code=201)
    def create_endpoint(choice: EndpointChoice) -> dict[str, Any]:
        body = CreateDeploymentInput.model_validate(
            {
                "slug": _required(choice.slug, "slug"),
                "target": _target(choice, required=True),
                **({"authMode": choice.auth_mode} if choice.auth_mode else {}),
            }
        )
        return {"deployment": described(studio.client.create_deployment(studio.scope, body))}

    @app.patch("/api/endpoints/{ref}")
    def update_endpoint(ref: str, choice: EndpointChoice) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        target = _target(choice, required=False)
        if target is not None:
            changes["target"] = target
        if choice.enabled is not None:
            changes["enabled"] = choice.enabled
        if choice.auth_mode is not None:
            changes["authMode"] = choice.auth_mode
        body = UpdateDeploymentInput.model_validate(changes)
        return {"deployment": described(studio.client.update_deployment(studio.scope, ref, body))}

    @app.delete("/api/endpoints/{ref}", status_code=204)
    def delete_endpoint(ref: str) -> Response:
        studio.client.delete_deployment(studio.scope, ref)
        return Response(status_code=204)

    @app.get("/api/endpoints/{ref}/keys")
    def keys(ref: str) -> dict[str, Any]:
        return {
            "keys": [key.to_wire() for key in studio.client.list_deployment_keys(studio.scope, ref)]
        }

    @app.post("/api/endpoints/{ref}/keys", status_code=201)
    def create_key(ref: str, label: Annotated[KeyLabel | None, Body()] = None) -> Response:
        created = studio.client.create_deployment_key(
            studio.scope, ref, CreateDeploymentKeyInput(label=label.label if label else None)
        )
        return JSONResponse(
            {"key": created.key.to_wire()}, status_code=201, headers={"cache-control": "no-store"}
        )

    @app.delete("/api/endpoints/{ref}/keys/{key_id}", status_code=204)
    def revoke_key(ref: str, key_id: str) -> Response:
        studio.client.revoke_deployment_key(studio.scope, ref, key_id)
        return Response(status_code=204)

    @app.get("/api/endpoints/{ref}/requests")
    def requests(ref: str) -> dict[str, Any]:
        runs = studio.client.list_deployment_runs(studio.scope, ref, limit=50)
        return {"runs": [item.to_wire() for item in runs]}

    # --- data -----------------------------------------------------------------------

    @app.get("/api/data")
    def data(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        return studio.data_rows(offset, limit)

    @app.get("/api/data/tokens")
    def data_tokens(row: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        return studio.data_tokens(row)

    @app.api_route(
        "/api/{rest:path}",
        methods=["GET", "POST", "PATCH", "DELETE", "PUT"],
        include_in_schema=False,
    )
    def unknown(rest: str) -> Response:
        return _error(404, f"No Studio API route `/api/{rest}`.")

    guarded: Any = StudioToken(app, token)
    guarded = PageHeaders(guarded)
    return LoopbackHost(guarded)


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise UsageError(f"`{name}` is required for this kind of target.")
    return value


def _target(choice: EndpointChoice, *, required: bool) -> dict[str, Any] | None:
    """The wire target a choice names: its ``target`` as given, or a run's adapter."""
    if choice.target is not None:
        return choice.target
    if choice.run is not None:
        kind: Literal["final", "checkpoint"] = "checkpoint" if choice.step is not None else "final"
        ref = AdapterRef(kind=kind, job_id=choice.run, step=choice.step)
        return AdapterTarget(adapter=ref).to_wire()
    if required:
        raise UsageError("Say what the endpoint serves: `run` (and `step`), or `target`.")
    return None


def _relay(
    opened: AbstractContextManager[Any], media_type: str, headers: dict[str, str] | None = None
) -> StreamingResponse:
    """Relay a streamed plane response: opened now (its errors answer as JSON), read as it comes."""
    response = opened.__enter__()

    def chunks() -> Iterator[bytes]:
        try:
            yield from response.iter_raw()
        except CloudApiError as error:  # a stream cut off mid-way ends here; the browser resumes
            logger.info("A relayed stream ended early: %s", error.message)
        except Exception as error:
            logger.info("A relayed stream ended early: %s", error)
        finally:
            opened.__exit__(None, None, None)

    return StreamingResponse(
        chunks(),
        media_type=media_type,
        headers={"cache-control": "no-store", "x-accel-buffering": "no", **(headers or {})},
    )


def _in_thread(
    work: Callable[[Callable[[int, int], None]], dict[str, Any]],
) -> Iterator[tuple[int, int] | dict[str, Any] | BaseException]:
    """Run ``work(progress)`` in a thread: each progress call, then its result or its error."""
    import queue
    import threading

    items: queue.Queue[tuple[int, int] | dict[str, Any] | BaseException] = queue.Queue()

    def run() -> None:
        try:
            items.put(work(lambda done, total: items.put((done, total))))
        except BaseException as error:
            items.put(error)

    threading.Thread(target=run, name="studio-eval", daemon=True).start()
    while True:
        item = items.get()
        yield item
        if not isinstance(item, tuple):
            return


def _eval_frames(
    first: tuple[int, int] | dict[str, Any],
    rest: Iterator[tuple[int, int] | dict[str, Any] | BaseException],
) -> Iterator[str]:
    """An eval's items as event-stream frames: ``progress``, then ``eval`` or ``error``."""
    import json

    for item in itertools.chain([first], rest):
        if isinstance(item, tuple):
            done, total = item
            yield f"event: progress\ndata: {json.dumps({'done': done, 'total': total})}\n\n"
        elif isinstance(item, dict):
            yield f"event: eval\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
        else:
            message = item.message if isinstance(item, CloudApiError) else str(item)
            if not isinstance(item, ArkorError):
                logger.error("An eval failed", exc_info=item)
                message = f"The eval failed: {item}"
            yield f"event: error\ndata: {json.dumps({'message': message})}\n\n"


def _answer_frames(stream: AbstractContextManager[Any], chunks: Iterator[Any]) -> Iterator[str]:
    """A chat answer as Studio's frames: ``delta`` text, then ``done`` or ``error``."""
    import json

    from arkor.sdk._chat import Reply

    reply = Reply(chunks)
    try:
        for text in reply:
            yield f"data: {json.dumps({'delta': text})}\n\n"
        usage = reply.usage
        done = {
            "model": reply.model,
            "finishReason": reply.finish_reason,
            "usage": {
                "promptTokens": usage.prompt_tokens,
                "completionTokens": usage.completion_tokens,
            }
            if usage is not None
            else None,
        }
        yield f"event: done\ndata: {json.dumps(done)}\n\n"
    except ArkorError as error:
        message = error.message if isinstance(error, CloudApiError) else str(error)
        yield f"event: error\ndata: {json.dumps({'message': message})}\n\n"
    except Exception as error:
        logger.exception("A chat answer failed")
        yield f"event: error\ndata: {json.dumps({'message': f'The answer failed: {error}'})}\n\n"
    finally:
        stream.__exit__(None, None, None)
