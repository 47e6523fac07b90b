"""The engine tests need the local extra: without it they skip, or fail under CI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.utils.requires import need

need("torch", "the engine tests need the local extra")


@dataclass
class BlobServer:
    """Files served over HTTP on 127.0.0.1; paths under /private/ need the bearer token."""

    token: str = "s3cret"
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)
    url: str = ""

    def add(self, path: str, body: str | bytes, content_type: str = "text/plain") -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.files[path] = (content_type, data)
        return self.url + path


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    server_state = BlobServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            server_state.authorizations.append(authorization)
            path = self.path.partition("?")[0]
            if path.startswith("/private/") and authorization != f"Bearer {server_state.token}":
                self.send_error(401 if authorization is None else 403)
                return
            if path not in server_state.files:
                self.send_error(404)
                return
            content_type, body = server_state.files[path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
