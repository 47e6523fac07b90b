"""The ASGI wrappers around the API, each small enough to read alone (outermost first).

- :class:`RequestContext` gives every request an id (``X-Request-ID``) and every answer
  ``X-Content-Type-Options: nosniff``; an exception no route handled is logged with its
  traceback under that id and answered ``{"error": "internal error", "requestId": …}``,
  so no exception text ever reaches a caller.
- :class:`HostGuard` answers only to the names the plane is reached by, so a web page
  whose domain was rebound to 127.0.0.1 (DNS rebinding) cannot use a local plane.
- :class:`BodyLimit` caps request bodies: JSON bodies at ``max_body_bytes``, uploads
  (streamed to disk: datasets, a worker's artifacts) at ``max_upload_bytes``, a worker's
  events at ``max_event_bytes``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor.cloud._deployments import RESERVED_SLUGS
from arkor.server._settings import Settings

logger = logging.getLogger("arkor.server")

REQUEST_ID_KEY = "arkor.request_id"
"""Where a request's id is kept in its ASGI scope."""
LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "[::1]")
"""The names a plane always answers to (any port)."""
_UPLOAD_PATH = "/v1/uploads"
_WORKER_EVENTS = re.compile(r"^/v1/internal/jobs/[^/]+/events/?$")
_WORKER_ARTIFACT = re.compile(r"^/v1/internal/jobs/[^/]+/artifacts/.")


def _json_response(status: int, body: dict[str, object]) -> tuple[Message, Message]:
    data = json.dumps(body).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))],
    }
    return start, {"type": "http.response.body", "body": data}


class RequestContext:
    """A request id and ``nosniff`` on every answer; unhandled exceptions logged, not echoed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope[REQUEST_ID_KEY] = request_id
        added = [(b"x-request-id", request_id.encode()), (b"x-content-type-options", b"nosniff")]
        started = False

        async def send_marked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        except Exception:
            logger.exception(
                "Request %s (%s %s) failed", request_id, scope.get("method"), scope.get("path")
            )
            if started:  # a stream already under way can only be cut off
                raise
            for message in _json_response(
                500, {"error": "internal error", "requestId": request_id}
            ):
                await send_marked(message)


def _host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lowercased, without its port; None when malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, rest = header.partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name + "]"
    name, colon, port = header.rpartition(":")
    if not colon:
        name = port
    elif not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


def is_loopback_host(host: str) -> bool:
    """Whether a bind address (``127.0.0.1``, ``::1``, ``localhost``) is this machine only."""
    address = _ip(host)
    return host == "localhost" if address is None else address.is_loopback


class HostGuard:
    """400 for a ``Host`` the plane doesn't answer to.

    Loopback names always pass. Bound beyond loopback, IP addresses (which no rebound
    domain can be) and ``allowed_hosts`` pass too, plus the host of ``public_url``.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.remote = not is_loopback_host(settings.host)
        names = [*LOOPBACK_NAMES]
        if self.remote:
            names += settings.allowed_hosts
            if settings.public_url:
                public = settings.public_url.split("://", 1)[-1].split("/", 1)[0]
                names.append(_host_name(public) or "")
        self.names = tuple(name for name in names if name)

    def allows(self, header: str | None) -> bool:
        name = _host_name(header) if header else None
        if name is None:
            return False
        address = _ip(name)
        if address is not None:
            return self.remote or address.is_loopback
        return _matches(name, self.names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next(
            (value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None
        )
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        shown = json.dumps(header[:100]) if header else "(none)"
        message = (
            f"This control plane does not answer to the Host {shown}: it answers only to the "
            f"names it is reached by ({', '.join(self.names)}"
            f"{', or an IP address' if self.remote else ''}), which keeps web pages from "
            "reaching it through DNS rebinding. To reach it by another name, start it with "
            "`arkor serve --allowed-host NAME` (or ARKOR_ALLOWED_HOSTS)."
        )
        for reply in _json_response(400, {"error": message}):
            await send(reply)


class DeploymentHost:
    """Route ``http://<slug>.localhost:<port>/v1/...`` to the path form ``/d/<slug>/v1/...``.

    Only a deployment's OpenAI API lives under a ``<slug>.localhost`` name: any other path
    there is the deployment's (and so a 404), never the plane's own API. Reserved names
    (``studio.localhost``, ``api.localhost``, ...) are no deployment's and reach the plane.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next(
                (value.decode("latin-1") for key, value in scope["headers"] if key == b"host"),
                None,
            )
            name = _host_name(header) if header else None
            slug = name.removesuffix(".localhost") if name is not None else ""
            if name != slug and "." not in slug and slug not in RESERVED_SLUGS:
                path = f"/d/{slug}{scope['path']}"
                scope = {**scope, "path": path, "raw_path": path.encode("latin-1")}
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """A request body over its cap; an HTTPException so FastAPI's body reading passes it on."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(
            413,
            f"The request body is larger than this plane accepts ({_size(limit)}). Send less, "
            f"or raise the limit on the plane with {setting}.",
        )


def _size(limit: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit}, {limit} bytes"
    return f"{limit} bytes"


class BodyLimit:
    """413 for a body over its cap: at once when ``Content-Length`` says so, else as it streams."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.body_limit = settings.max_body_bytes
        self.upload_limit = settings.max_upload_bytes
        self.event_limit = settings.max_event_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if (scope["method"] == "POST" and path.rstrip("/") == _UPLOAD_PATH) or (
            scope["method"] == "PUT" and _WORKER_ARTIFACT.match(path)
        ):
            limit, setting = self.upload_limit, "ARKOR_MAX_UPLOAD_BYTES"
        elif scope["method"] == "POST" and _WORKER_EVENTS.match(path):
            limit, setting = self.event_limit, "ARKOR_MAX_EVENT_BYTES"
        else:
            limit, setting = self.body_limit, "ARKOR_MAX_BODY_BYTES"
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), b"")
        if declared.isdigit() and int(declared) > limit:
            error = BodyTooLarge(limit, setting)
            for reply in _json_response(error.status_code, {"error": error.detail}):
                await send(reply)
            return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, receive_counted, send)
