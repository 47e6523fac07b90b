"""Run Studio: pick its port, mint the launch's token, connect to the plane, serve until Ctrl-C."""

from __future__ import annotations

import errno
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from arkor.errors import ArkorError

STUDIO_HOST = "127.0.0.1"
DEFAULT_STUDIO_PORT = 4000
FALLBACK_PORTS = range(DEFAULT_STUDIO_PORT, DEFAULT_STUDIO_PORT + 10)
"""Ports tried in order when none is given: 4000, then 4001 … 4009."""


class PortTaken(ArkorError):
    """The port asked for (or every fallback port) is in use."""


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses TIME_WAIT
    try:
        sock.bind((STUDIO_HOST, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_studio(port: int | None = None) -> socket.socket:
    """A listening loopback socket: ``port`` exactly, else the first free of 4000 … 4009."""
    if port is not None:
        try:
            return _listen(port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise ArkorError(
                    f"Cannot listen on {STUDIO_HOST}:{port}: {error.strerror or error}."
                ) from error
            raise PortTaken(
                f"Port {port} is taken on {STUDIO_HOST}, so Studio cannot listen there. Pick "
                f"another with --port, or leave --port out to take the first free port of "
                f"{FALLBACK_PORTS[0]}-{FALLBACK_PORTS[-1]}."
            ) from None
    for candidate in FALLBACK_PORTS:
        try:
            return _listen(candidate)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise ArkorError(
                    f"Cannot listen on {STUDIO_HOST}:{candidate}: {error.strerror or error}."
                ) from error
    raise PortTaken(
        f"Ports {FALLBACK_PORTS[0]}-{FALLBACK_PORTS[-1]} are all taken on {STUDIO_HOST} (other "
        "Studios, or other servers). Stop one, or pick a free port with --port N."
    )


def run_studio(
    root: Path,
    sock: socket.socket,
    *,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Serve Studio for the project at ``root`` on ``sock`` until Ctrl-C or SIGTERM.

    The token file exists exactly while Studio runs. The plane is the one the project
    resolves to (``[cloud] url``, a running ``arkor serve``), else one embedded for the
    life of Studio. ``on_ready(url, plane)`` is called once requests are answered.
    """
    import uvicorn

    from arkor.sdk import open_session
    from arkor.studio._app import create_app
    from arkor.studio._studio import Studio
    from arkor.studio._token import StudioTokenFile

    url = f"http://{STUDIO_HOST}:{sock.getsockname()[1]}"
    with StudioTokenFile() as token_file:
        session = open_session(cwd=root)
        studio = Studio(root, session)
        try:
            app = create_app(studio, token_file.token)
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=3,
            )
            server = uvicorn.Server(config)
            if on_ready is not None:
                threading.Thread(
                    target=_announce,
                    args=(server, lambda: on_ready(url, session.describe())),
                    daemon=True,
                ).start()
            with _terminate_as_exit():
                server.run(sockets=[sock])
        finally:
            studio.close()
            session.close()


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Let SIGTERM unwind the stack (exit 143), so the token file goes as on Ctrl-C.

    uvicorn stops on SIGTERM, then raises it again under the handler it found; the
    default handler would end the process before any cleanup ran.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _announce(server: object, announce: Callable[[], None]) -> None:
    while not getattr(server, "started", False):
        if getattr(server, "should_exit", False):
            return
        time.sleep(0.02)
    announce()
