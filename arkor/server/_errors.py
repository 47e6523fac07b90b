"""Every non-2xx answer is ``{"error": "message", ...}`` (PROTOCOL.md), whoever raised it.

Exceptions no handler here knows are answered by :class:`arkor.server._guards.RequestContext`
(500 with a request id, the cause only in the log).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from arkor.cloud import ErrorBody, InternalError, InvalidRequest, UpgradeRequired


class ApiError(Exception):
    """Raised by routes and dependencies; becomes a JSON error response with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def not_found(what: str) -> ApiError:
    """The answer for anything missing *or* outside the caller's orgs, so ids don't leak."""
    return ApiError(404, f"{what} not found.")


_DESCRIPTIONS = {
    400: "Bad request: a malformed parameter, or a Host this plane does not answer to.",
    401: "Missing or invalid bearer token.",
    403: "The caller may see this but not do it.",
    404: "Not found, or outside the caller's orgs.",
    405: "Method not allowed; `Allow` lists the path's methods.",
    409: "Conflicts with the resource's state.",
    413: "The request body is over the plane's limit.",
    422: "The request does not validate; `issues` names each field.",
    426: "The client is older than the plane accepts.",
    429: "Too many requests; see `Retry-After`.",
    500: "Internal error; the plane's log has the cause under `requestId`.",
    502: "A worker process failed; the plane's log has the cause under `requestId`.",
    503: "A worker process could not be started or reached.",
}
_MODELS: dict[int, type[ErrorBody]] = {
    422: InvalidRequest,
    426: UpgradeRequired,
    500: InternalError,
    502: InternalError,
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with its body model."""
    return {
        status: {"model": _MODELS.get(status, ErrorBody), "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


COMMON_ERRORS = error_responses(400, 405, 413, 426, 500)
"""What any route may answer: a bad Host, a wrong method, a body over the cap, an old
client, an internal error."""
SCOPED_ERRORS = error_responses(401, 404, 422)
"""What routes behind a token and a scope may answer as well."""


def install_error_handlers(app: FastAPI) -> None:
    """Turn ApiError, HTTP errors and validation errors into ``{"error": ...}`` bodies."""

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        body: dict[str, Any] = {"error": error.message, **error.extra}
        if error.status == 422:  # every 422 lists its issues (here: the one)
            body.setdefault("issues", [error.message])
        return JSONResponse(body, status_code=error.status)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(
            {"error": str(error.detail)}, status_code=error.status_code, headers=headers
        )

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        issues = [_issue(issue) for issue in error.errors()]
        message = "The request is invalid: " + "; ".join(issues) + "."
        return JSONResponse({"error": message, "issues": issues}, status_code=422)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path takes (Starlette's 405 names one route's)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _issue(issue: Any) -> str:
    location = ".".join(str(part) for part in issue.get("loc", ()))
    if issue.get("type") == "string_unicode":  # a lone surrogate such as "\ud800"
        text = "is not valid Unicode (it holds a lone surrogate such as \\ud800); send UTF-8 text"
    else:
        text = str(issue.get("msg", "invalid"))
    return f"{location}: {text}" if location else text
