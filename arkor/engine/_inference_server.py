"""The inference worker: :class:`InferenceEngine` behind a loopback HTTP server.

The control plane starts one per plane (``python -m arkor.engine.serve_inference``) and
keeps it, so loaded bases and adapters stay warm across requests while the plane itself
never imports torch. The protocol is private to the two:

- start-up: one JSON line on stdout, ``{"port": N}`` once listening, or ``{"error": ...}``;
- ``POST /v1/chat`` with ``Authorization: Bearer $ARKOR_INFERENCE_SECRET`` and
  ``{baseModel, adapterPath, model, messages, temperature?, topP?, maxTokens?, stream}``:
  SSE ``data: <chat.completion.chunk>`` frames ending with ``data: [DONE]``, or one
  ``chat.completion``; a request that can't be answered gets ``{"error"}`` with 422;
- ``POST /v1/eval`` (same secret) with ``{baseModel, baseRevision, adapterPath,
  heldOutPath, spec, rows, checkpoint, step, seed, jobId}``: ``heldOutPath`` is a run's
  ``eval/held-out.jsonl``, ``spec`` its ``EvalSpec`` (wire form), ``rows`` how many rows
  to ask (null: ``spec.rows``), ``checkpoint`` / ``step`` what the event names,
  ``seed`` the job's seed (which rows are chosen), ``jobId`` the event's job (optional).
  The answer is ``application/x-ndjson``: ``{"type": "progress", "done", "total"}`` as
  batches finish, then ``{"type": "event", "event": <eval.completed, requested>}`` or
  ``{"type": "error", "message"}``; a body that can't be used gets ``{"error"}`` with 422;
- the worker exits when its stdin closes, i.e. when the plane goes away.

A client that disconnects mid-stream closes the generator, which stops generation (a
disconnected eval stops at its next batch).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from arkor.cloud import ChatCompletionChunk, EvalSpec
from arkor.engine._eval import EvalTarget, evaluate, failed_eval, read_held_out
from arkor.engine._infer import GenerationRequest, GenerationStopped, InferenceEngine
from arkor.errors import ArkorError

SECRET_ENV = "ARKOR_INFERENCE_SECRET"

logger = logging.getLogger("arkor.inference")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, engine: InferenceEngine, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.engine = engine
        self.secret = secret


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection; a stream ends when it closes
    # a streamed answer is many small writes: without this, Nagle's algorithm holds each one
    # back until the plane acknowledges the last (tens of ms per token with delayed ACKs)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(HTTPStatus.OK, {"ok": True})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"No route {self.path}."})

    def do_POST(self) -> None:
        supplied = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(supplied.encode(), self.server.secret.encode()):
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "Wrong inference secret."})
            return
        if self.path == "/v1/eval":
            self._eval()
            return
        if self.path != "/v1/chat":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"No route {self.path}."})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            request = _generation_request(body)
            engine = self.server.engine
            if body.get("stream", True):
                chunks = engine.stream(request, model_name=body.get("model"))
            else:
                completion = engine.complete(request, model_name=body.get("model"))
        except (ArkorError, ValueError, KeyError, TypeError) as error:
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(error)})
            return
        except Exception as error:  # report, don't crash the worker for other requests
            logger.exception("Inference failed")
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"}
            )
            return
        if body.get("stream", True):
            self._stream(chunks)
        else:
            self._json(HTTPStatus.OK, completion.to_wire())

    def _stream(self, chunks: Iterator[ChatCompletionChunk]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk.to_wire())}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
        except OSError:  # the plane's side went away: stop generating
            pass
        except Exception:  # too late for a status code; the missing [DONE] tells the client
            logger.exception("Inference failed mid-stream")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _eval(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            spec = EvalSpec.model_validate(body["spec"])
            items = read_held_out(Path(str(body["heldOutPath"])))
            target = EvalTarget(
                job_id=str(body.get("jobId") or ""),
                base_model=str(body["baseModel"]),
                base_revision=str(body["baseRevision"]) if body.get("baseRevision") else None,
                adapter=Path(str(body["adapterPath"])),
                step=_optional_int(body.get("step")),
                checkpoint=_optional_int(body.get("checkpoint")),
                requested=True,
            )
            rows = _optional_int(body.get("rows"))
            seed = int(body.get("seed") or 0)
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": f"The eval cannot run: {error}"})
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        stop = threading.Event()

        def send(line: dict[str, Any]) -> None:
            try:
                self.wfile.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
                self.wfile.flush()
            except OSError:  # the plane's side went away: stop at the next batch
                stop.set()

        def progress(done: int, total: int) -> None:
            send({"type": "progress", "done": done, "total": total})

        try:
            event = evaluate(
                items,
                spec,
                self.server.engine,
                target,
                seed=seed,
                rows=rows,
                progress=progress,
                stop=stop,
            )
        except GenerationStopped:
            return
        except Exception as error:  # reported in the answer, the worker keeps serving
            if not isinstance(error, ArkorError):
                logger.exception("Eval failed")
            send({"type": "error", "message": failed_eval(target, error).error})
            return
        send({"type": "event", "event": event.to_wire()})

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s " + format, self.address_string(), *args)


def _generation_request(body: dict[str, Any]) -> GenerationRequest:
    options: dict[str, Any] = {}
    for wire, name in (
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("maxTokens", "max_tokens"),
        ("seed", "seed"),
    ):
        if body.get(wire) is not None:
            options[name] = body[wire]
    adapter = body.get("adapterPath")
    return GenerationRequest(
        base_model=str(body["baseModel"]),
        base_revision=str(body["baseRevision"]) if body.get("baseRevision") else None,
        response_format=body.get("responseFormat"),
        adapter_path=Path(adapter) if adapter else None,
        messages=[{"role": m["role"], "content": m["content"]} for m in body["messages"]],
        **options,
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _announce(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _stop_on_eof(server: _Server) -> None:
    """The plane holds our stdin; when it closes (the plane stopped or died), so do we."""
    sys.stdin.buffer.read()
    server.shutdown()


def main() -> int:
    """Serve until stdin closes; exit 1 when the engine can't run here."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    secret = os.environ.pop(SECRET_ENV, "")
    if not secret:
        _announce({"error": f"No secret: the plane passes it in ${SECRET_ENV}."})
        return 2
    try:
        from arkor.engine._deps import require_local

        require_local()
        import transformers  # noqa: F401  (loaded before announcing: the first answer is faster)
    except ArkorError as error:
        _announce({"error": str(error)})
        return 1
    server = _Server(InferenceEngine(), secret)
    _announce({"port": server.server_address[1]})
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stdout was the plane's pipe; now the log
    threading.Thread(target=_stop_on_eof, args=(server,), daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
