"""Serving the plane with uvicorn: in the foreground (``arkor serve``) or in a thread.

The listening socket is bound before the app starts, so a plane on port 0 knows its
URL (which its workers need) before it accepts the first request.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from arkor.errors import ArkorError
from arkor.server._app import create_app
from arkor.server._db import Database
from arkor.server._oidc import prepare_oidc
from arkor.server._settings import Settings, load_settings

_GRACEFUL_SHUTDOWN_SECONDS = 3


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: an ephemeral one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ArkorError(
            f"Cannot listen on {host}:{port}: {error.strerror or error}. Is another "
            "`arkor serve` running there? Pick another port with --port."
        ) from error
    sock.listen(128)
    return sock


class WorkerChatter(logging.Filter):
    """Moves the access lines of workers' routine calls to DEBUG.

    A running job's worker beats a heartbeat every second and posts every event; at INFO
    those lines would bury the ones that tell what happened. A worker call that failed
    stays at INFO.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 5
            and str(args[2]).startswith("/v1/internal/")
            and isinstance(args[4], int)
            and args[4] < 400
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def log_config(*, debug: bool = False) -> dict[str, Any]:
    """uvicorn's console logging plus the plane's own lines, with workers' chatter at DEBUG.

    ``debug`` (``ARKOR_DEBUG=1``) shows the DEBUG lines too.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["worker_chatter"] = {"()": WorkerChatter}
    config["handlers"]["access"]["filters"] = ["worker_chatter"]
    level = "DEBUG" if debug else "INFO"
    config["loggers"]["arkor"] = {"handlers": ["default"], "level": level, "propagate": False}
    config["loggers"]["uvicorn.access"]["level"] = level
    return config


def _server(settings: Settings, **options: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        create_app(settings),
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )
    return uvicorn.Server(config)


def prepare_database(settings: Settings) -> None:
    """Create or migrate the database before serving.

    A database this version can't use then stops the start with its own clear error,
    instead of failing inside the app's startup.
    """
    Database(settings.database_path).close()


def serve(settings: Settings, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM, then stop workers and close the database.

    Call :func:`prepare_database` first, so a database it can't use is said plainly.
    Running jobs go back to the queue, to resume when a plane next starts on this home.
    """
    debug = os.environ.get("ARKOR_DEBUG", "").lower() in ("1", "true", "yes")
    _server(settings, log_config=log_config(debug=debug)).run(sockets=[sock])


@dataclass
class RunningPlane:
    """A plane serving from a background thread of this process."""

    url: str
    settings: Settings
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and its workers (their jobs go back to the queue, to resume), and wait."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningPlane:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(
    settings: Settings | None = None, *, port: int = 0, startup_timeout: float = 30.0
) -> RunningPlane:
    """Start a plane on ``settings.host`` (loopback by default) and ``port`` (0: ephemeral).

    Returns once it accepts requests; ``.url`` is its address, ``.stop()`` ends it.
    """
    settings = settings or load_settings()
    prepare_database(settings)
    prepare_oidc(settings)
    sock = bind(settings.host, port)
    bound_port = sock.getsockname()[1]
    settings = dataclasses.replace(settings, port=bound_port)
    server = _server(settings, log_config=None, log_level="warning", access_log=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"arkor-plane-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise ArkorError(
                f"The control plane did not start (home: {settings.home}); its log says why."
            )
        time.sleep(0.01)
    return RunningPlane(settings.plane_url, settings, server, thread)
