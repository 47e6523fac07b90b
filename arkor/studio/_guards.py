"""The ASGI wrappers in front of Studio's routes, outermost first, each small enough to read alone.

- :class:`LoopbackHost` answers only requests whose ``Host`` is a loopback name, so a web
  page whose domain was rebound to 127.0.0.1 (DNS rebinding) cannot reach Studio.
- :class:`StudioToken` requires the per-launch token on every ``/api`` route, in the
  ``X-Arkor-Studio-Token`` header; the ``studioToken`` query is taken only on the routes
  a browser opens without headers (an EventSource, a download link).
- :class:`PageHeaders` gives every answer a strict Content-Security-Policy and no-referrer,
  no-sniff and no-framing headers. There is no CORS: nothing is served to another origin.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-arkor-studio-token"
TOKEN_QUERY = "studioToken"
QUERY_TOKEN_ROUTES = (
    re.compile(r"/api/runs/[^/]+/events"),
    re.compile(r"/api/runs/[^/]+/artifacts/.+"),
)
"""The GET routes a browser opens without headers: the event stream, artifact downloads."""
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message}}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_loopback_host(host: str) -> bool:
    """Whether a ``Host`` header (with or without its port) names this machine's loopback."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:4000
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHost:
    """400 for a request whose ``Host`` is not a loopback name (DNS rebinding)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            if host is None or not is_loopback_host(host):
                await _refuse(
                    send,
                    400,
                    f"Studio answers only on this machine's loopback names (localhost, 127.0.0.1, "
                    f"[::1]), not on `{host or ''}`. Open the URL `arkor dev` printed.",
                )
                return
        await self.app(scope, receive, send)


class StudioToken:
    """401 for an ``/api`` request without this launch's token (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/api" or path.startswith("/api/")):
            presented = _header(scope, TOKEN_HEADER.encode())
            if (
                presented is None
                and scope.get("method") in ("GET", "HEAD")
                and any(route.fullmatch(path) for route in QUERY_TOKEN_ROUTES)
            ):
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                presented = (query.get(TOKEN_QUERY) or [None])[0]
            if presented is None or not hmac.compare_digest(presented.encode(), self._token):
                await _refuse(
                    send,
                    401,
                    "This request lacks the Studio token of this launch (the "
                    f"`{TOKEN_HEADER}` header). Reload the page `arkor dev` printed.",
                )
                return
        await self.app(scope, receive, send)


class PageHeaders:
    """A strict CSP and the no-sniff, no-referrer and no-framing headers on every answer."""

    _HEADERS = (
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self._HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
