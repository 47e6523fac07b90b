"""Serving the plane with uvicorn: in the foreground (``arkor serve``) or in a thread.

The listening socket is bound before the app starts, so a plane on port 0 knows its
URL (which its workers need) before it accepts the first request.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from arkor.errors import ArkorError
from arkor.server._app import create_app
from arkor.server._db import Database
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
    """
    _server(settings).run(sockets=[sock])


@dataclass
class RunningPlane:
    """A plane serving from a background thread of this process."""

    url: str
    settings: Settings
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving, stop its workers (their jobs fail with the reason), and wait."""
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
