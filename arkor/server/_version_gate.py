"""Refuse clients older than the plane accepts (426) and warn those about to be (headers).

Pure ASGI, so streamed responses pass through untouched. Requests without an
``X-Arkor-Client: arkor-python/<version>`` header (curl, other clients) are let through.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor.cloud import UpgradeRequired

_CLIENT = re.compile(r"arkor-python/(\d+(?:\.\d+)*)")
UPGRADE_HINT = "pip install --upgrade arkor"


def parse_version(text: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``1.2.0rc1`` → ``(1, 2, 0)``."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _below(version: tuple[int, ...], limit: tuple[int, ...]) -> bool:
    width = max(len(version), len(limit))
    return version + (0,) * (width - len(version)) < limit + (0,) * (width - len(limit))


class VersionGate:
    """ASGI middleware: 426 below ``min_version``; Deprecation headers below ``deprecated_below``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        min_version: str | None,
        deprecated_below: str | None,
        sunset: str | None,
    ) -> None:
        self.app = app
        self.min_version = min_version
        self.minimum = parse_version(min_version) if min_version else None
        self.deprecated = parse_version(deprecated_below) if deprecated_below else None
        self.deprecated_below = deprecated_below
        self.sunset = sunset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.minimum is None and self.deprecated is None):
            await self.app(scope, receive, send)
            return
        version = self._client_version(scope)
        if version is None:
            await self.app(scope, receive, send)
            return
        if self.minimum is not None and _below(version, self.minimum):
            await self._refuse(send, version)
            return
        if self.deprecated is None or not _below(version, self.deprecated):
            await self.app(scope, receive, send)
            return
        headers = self._deprecation_headers(version)

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_marked)

    @staticmethod
    def _client_version(scope: Scope) -> tuple[int, ...] | None:
        for name, value in scope["headers"]:
            if name == b"x-arkor-client":
                match = _CLIENT.search(value.decode("latin-1"))
                return parse_version(match.group(1)) if match else None
        return None

    async def _refuse(self, send: Send, version: tuple[int, ...]) -> None:
        shown = ".".join(map(str, version))
        refusal = UpgradeRequired(
            error=f"arkor {shown} is too old for this control plane, which needs "
            f"{self.min_version} or newer. Upgrade with `{UPGRADE_HINT}`.",
            min_version=self.min_version,
            upgrade=UPGRADE_HINT,
        )
        body = json.dumps(refusal.to_wire()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 426,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _deprecation_headers(self, version: tuple[int, ...]) -> list[tuple[bytes, bytes]]:
        shown = ".".join(map(str, version))
        message = (
            f"arkor {shown} is deprecated by this control plane; upgrade to "
            f"{self.deprecated_below} or newer with `{UPGRADE_HINT}`."
        )
        headers = [
            (b"deprecation", b"true"),
            (b"warning", f'299 - "{message}"'.encode("latin-1")),
        ]
        if self.sunset:
            headers.append((b"sunset", self.sunset.encode("latin-1")))
        return headers
