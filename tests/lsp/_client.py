"""A small synchronous Language Server Protocol client for tests.

It speaks JSON-RPC 2.0 over a server's stdin/stdout with ``Content-Length``
framing. A reader thread decodes every message the server sends: responses
are matched to requests by id, requests from the server (such as
``workspace/configuration``) are answered through handlers, and
``textDocument/publishDiagnostics`` notifications are recorded per document.
Every wait has a timeout, so a hung or crashed server fails a test instead of
hanging it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

JsonValue = Any
"""Any value that ``json`` can encode or has decoded."""

ServerRequestHandler = Callable[[JsonValue], JsonValue]
"""Produces the result for a request that the server sends to the client."""

DEFAULT_TIMEOUT = 15.0
"""Seconds to wait for any single answer; generous for slow CI machines."""

_STDERR_LINES_KEPT = 50


class LspError(RuntimeError):
    """The server answered with an error, died, or did not answer in time."""


class LspClient:
    """Runs one language server process and talks to it synchronously."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        handlers: Mapping[str, ServerRequestHandler] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self._handlers: dict[str, ServerRequestHandler] = dict(handlers or {})
        self._process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill reaches any helpers too
        )
        self._condition = threading.Condition()
        self._write_lock = threading.Lock()
        self._next_id = 1
        self._responses: dict[int, dict[str, JsonValue]] = {}
        self._diagnostics: dict[str, list[list[dict[str, JsonValue]]]] = {}
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._reader_failure: str | None = None
        self._answered: collections.Counter[str] = collections.Counter()
        self._threads = [
            threading.Thread(target=self._read_messages, name="lsp-reader", daemon=True),
            threading.Thread(target=self._read_stderr, name="lsp-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- lifecycle -----------------------------------------------------------------

    def initialize(self, root: Path) -> None:
        """Perform the initialize handshake with ``root`` as the workspace folder."""
        self.request(
            "initialize",
            {
                "processId": None,
                "clientInfo": {"name": "arkor-tests"},
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": _CLIENT_CAPABILITIES,
            },
        )
        self.notify("initialized", {})

    def close(self) -> None:
        """Ask the server to shut down and exit; kill it if it does not comply."""
        if self._process.poll() is None:
            try:
                self.request("shutdown", None, timeout=5.0)
                self.notify("exit", None)
                self._process.wait(timeout=5.0)
            except (LspError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5.0)
        for thread in self._threads:
            thread.join(timeout=5.0)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # unflushed input to a server that died
                    stream.close()

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- messaging -----------------------------------------------------------------

    def request(self, method: str, params: JsonValue, *, timeout: float | None = None) -> JsonValue:
        """Send a request and block until its response arrives."""
        with self._condition:
            request_id = self._next_id
            self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        response = self._wait_for(
            lambda: self._responses.pop(request_id, None),
            timeout,
            f"a response to {method!r}",
        )
        if "error" in response:
            raise LspError(f"{method} failed: {response['error']}")
        return response.get("result")

    def notify(self, method: str, params: JsonValue) -> None:
        """Send a notification (no response expected)."""
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    # -- documents -----------------------------------------------------------------

    def open_document(self, path: Path, language_id: str, text: str) -> str:
        """Tell the server about a document's contents and return its URI."""
        uri = path.as_uri()
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": language_id, "version": 1, "text": text}},
        )
        return uri

    def completion_labels(self, uri: str, line: int, character: int) -> set[str]:
        """Return the labels of the completion items offered at a position."""
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        items = result.get("items", []) if isinstance(result, dict) else result or []
        return {item["label"] for item in items}

    def hover_text(self, uri: str, line: int, character: int) -> str:
        """Return the hover contents at a position flattened to plain text ("" if none)."""
        result = self.request(
            "textDocument/hover",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        return _flatten_hover(result["contents"]) if result else ""

    def wait_for_diagnostics(
        self, uri: str, *, timeout: float | None = None
    ) -> list[dict[str, JsonValue]]:
        """Block until the server publishes diagnostics for ``uri`` and return them."""
        diagnostics: list[dict[str, JsonValue]] = self._wait_for(
            lambda: self._diagnostics[uri].pop(0) if self._diagnostics.get(uri) else None,
            timeout,
            f"diagnostics for {uri}",
        )
        return diagnostics

    def wait_for_server_request(self, method: str, *, timeout: float | None = None) -> None:
        """Block until the server has sent (and the client answered) a ``method`` request."""
        self._wait_for(
            lambda: True if self._answered[method] else None, timeout, f"a {method!r} request"
        )

    # -- internals -----------------------------------------------------------------

    def _wait_for(self, take: Callable[[], Any], timeout: float | None, what: str) -> Any:
        """Wait until ``take`` (called with the lock held) returns something not None."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._condition:
            while True:
                value = take()
                if value is not None:
                    return value
                if self._reader_failure is not None:
                    problem = f"server stopped ({self._reader_failure}) while waiting for {what}"
                    raise LspError(problem + self._stderr_tail())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LspError(f"timed out waiting for {what}" + self._stderr_tail())
                self._condition.wait(remaining)

    def _send(self, message: dict[str, JsonValue]) -> None:
        body = json.dumps(message).encode("utf-8")
        stdin = self._process.stdin
        assert stdin is not None
        with self._write_lock:
            try:
                stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                stdin.flush()
            except OSError as error:
                raise LspError(f"cannot write to server: {error}{self._stderr_tail()}") from error

    def _read_messages(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while (message := _read_frame(stdout)) is not None:
                self._dispatch(message)
            failure = f"exit status {self._process.wait()}"
        except Exception as error:  # reported to the waiting test instead of lost in a thread
            failure = f"cannot handle its output: {error!r}"
        with self._condition:
            self._reader_failure = failure
            self._condition.notify_all()

    def _dispatch(self, message: dict[str, JsonValue]) -> None:
        method = message.get("method")
        if method is None:
            with self._condition:
                self._responses[message["id"]] = message
                self._condition.notify_all()
        elif "id" in message:
            self._answer(message["id"], method, message.get("params"))
        elif method == "textDocument/publishDiagnostics":
            params = message["params"]
            with self._condition:
                self._diagnostics.setdefault(params["uri"], []).append(params["diagnostics"])
                self._condition.notify_all()

    def _answer(self, request_id: JsonValue, method: str, params: JsonValue) -> None:
        handler = self._handlers.get(method)
        if handler is None:
            reply = {"error": {"code": -32601, "message": f"client does not handle {method}"}}
        else:
            reply = {"result": handler(params)}
        self._send({"jsonrpc": "2.0", "id": request_id, **reply})
        with self._condition:
            self._answered[method] += 1
            self._condition.notify_all()

    def _read_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        for raw in stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _stderr_tail(self) -> str:
        lines = list(self._stderr)
        return "\nserver stderr (last lines):\n" + "\n".join(lines) if lines else ""


_CLIENT_CAPABILITIES: dict[str, JsonValue] = {
    "workspace": {"configuration": True, "workspaceFolders": True},
    "textDocument": {
        "synchronization": {"dynamicRegistration": False},
        "completion": {
            "completionItem": {
                "snippetSupport": False,
                "documentationFormat": ["markdown", "plaintext"],
            },
        },
        "hover": {"contentFormat": ["markdown", "plaintext"]},
        "publishDiagnostics": {"relatedInformation": False},
    },
}


def _read_frame(stream: IO[bytes]) -> dict[str, JsonValue] | None:
    """Read one ``Content-Length`` framed JSON message; None at end of stream."""
    length: int | None = None
    while True:
        header = stream.readline()
        if not header:
            return None
        if header in (b"\r\n", b"\n"):
            break
        name, _, value = header.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise LspError("message without Content-Length header")
    body = stream.read(length)
    if len(body) < length:
        return None
    message: dict[str, JsonValue] = json.loads(body)
    return message


def _flatten_hover(contents: JsonValue) -> str:
    """Turn any of the hover content shapes the protocol allows into text."""
    if isinstance(contents, str):
        return contents
    if isinstance(contents, list):
        return "\n".join(_flatten_hover(part) for part in contents)
    return str(contents.get("value", ""))
