"""Every non-2xx answer is ``{"error": "message", ...}`` (PROTOCOL.md), whoever raised it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


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


def install_error_handlers(app: FastAPI) -> None:
    """Turn ApiError, HTTP errors and validation errors into ``{"error": ...}`` bodies."""

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return JSONResponse({"error": error.message, **error.extra}, status_code=error.status)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return JSONResponse(
            {"error": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        issues = [_issue(issue) for issue in error.errors()]
        message = "The request is invalid: " + "; ".join(issues) + "."
        return JSONResponse({"error": message, "issues": issues}, status_code=422)

    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # still logged with its traceback by the server; the caller gets the one-line cause
        return JSONResponse(
            {"error": f"Internal error: {type(error).__name__}: {error}"}, status_code=500
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _issue(issue: Any) -> str:
    location = ".".join(str(part) for part in issue.get("loc", ()))
    return f"{location}: {issue.get('msg', 'invalid')}" if location else str(issue.get("msg"))
