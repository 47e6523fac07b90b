"""A loopback TCP proxy for tests: records what clients send and breaks connections on demand.

It forwards raw bytes, so HTTP, keep-alive and SSE pass through untouched until it is
told to cut: every connection at once (:meth:`TcpProxy.drop_all`), or each connection
after it has carried ``drop_every`` bytes back to the client (possibly mid-frame).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

_CHUNK = 64 * 1024


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` (``host:port``), one thread per direction.

    Example::

        with TcpProxy("127.0.0.1:8765", drop_every=2000) as proxy:
            httpx.get(proxy.url + "/v1/auth/cli/config")
            assert b"GET /v1/auth/cli/config" in proxy.received
    """

    def __init__(self, target: str, *, drop_every: int | None = None) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self.drop_every = drop_every
        self.received = bytearray()
        self.connections = 0
        self.drops = 0
        self._lock = threading.Lock()
        self._open: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def drop_all(self) -> int:
        """Cut every open connection now; returns how many were cut."""
        with self._lock:
            links = list(self._open)
            self.drops += len(links)
        for link in links:
            link.cut()
        return len(links)

    def close(self) -> None:
        """Stop accepting, cut what is open and wait for every thread."""
        self._stopping.set()
        self._accepting.join()
        self._server.close()
        self.drop_all()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self.connections += 1
                self._open.add(link)
            for downstream in (False, True):
                thread = threading.Thread(target=self._pump, args=(link, downstream), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, link: _Link, downstream: bool) -> None:
        source, sink = (link.upstream, link.client) if downstream else (link.client, link.upstream)
        carried = 0
        try:
            while chunk := source.recv(_CHUNK):
                if not downstream:
                    with self._lock:
                        self.received += chunk
                elif self.drop_every is not None and carried + len(chunk) >= self.drop_every:
                    sink.sendall(chunk[: self.drop_every - carried])
                    with self._lock:
                        self.drops += 1
                    break
                sink.sendall(chunk)
                carried += len(chunk)
        except OSError:
            pass
        link.cut()
        if link.finish():
            with self._lock:
                self._open.discard(link)


class _Link:
    """One proxied connection: the client's socket and ours to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._pumps = 2
        self._lock = threading.Lock()

    def cut(self) -> None:
        """Shut both sockets both ways, which also wakes a pump blocked in ``recv``."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> bool:
        """One pump is done; the last one closes the sockets and returns True."""
        with self._lock:
            self._pumps -= 1
            if self._pumps:
                return False
        self.client.close()
        self.upstream.close()
        return True
