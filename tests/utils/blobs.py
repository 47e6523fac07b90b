"""Dataset files served over HTTP on 127.0.0.1, as a blob URL points at them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.utils.loopback import QuietHandler, serving


@dataclass
class BlobServer:
    """Files served on loopback; paths under /private/ need the bearer token.

    Every answer carries an ``ETag`` (a digest of the body) and a fixed ``Last-Modified``.
    """

    token: str = "s3cret"
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)
    url: str = ""

    def add(self, path: str, body: str | bytes, content_type: str = "text/plain") -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.files[path] = (content_type, data)
        return self.url + path


@contextmanager
def serving_blobs() -> Iterator[BlobServer]:
    state = BlobServer()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            state.authorizations.append(authorization)
            path = self.path.partition("?")[0]
            if path.startswith("/private/") and authorization != f"Bearer {state.token}":
                self.send_error(401 if authorization is None else 403)
                return
            if path not in state.files:
                self.send_error(404)
                return
            content_type, body = state.files[path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
            self.send_header("Last-Modified", "Mon, 30 Nov 2026 12:00:00 GMT")
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as url:
        state.url = url
        yield state
