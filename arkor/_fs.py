"""Filesystem helpers shared by every room: atomic writes and content digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, cast

from arkor._home import PRIVATE_FILE_MODE

_CHUNK = 1 << 20


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    See :func:`atomic_write_chunks`.
    """
    atomic_write_chunks(path, (data,), mode=mode)


def atomic_write_chunks(path: Path, chunks: Iterable[bytes], *, mode: int | None = None) -> None:
    """Stream ``chunks`` into ``path`` atomically (a download, a large file).

    The bytes go to a temporary file in the same folder, are flushed to disk, and the
    file is renamed over ``path``. On any failure the temporary file is removed and
    ``path`` is left as it was. ``mode`` defaults to the replaced file's permissions, or
    to the usual ones for a new file (credentials pass ``0o600``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode if mode is not None else _mode_for(path))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_private(path: Path, mode: str = "wb") -> BinaryIO:
    """Open ``path`` for binary writing (``"wb"``, ``"ab"``, ``"xb"``), creating it owner-only
    (0600) whatever the umask: uploads and logs under the plane's home."""
    flags = {"wb": os.O_TRUNC, "ab": os.O_APPEND, "xb": os.O_EXCL}[mode]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, PRIVATE_FILE_MODE)
    return cast(BinaryIO, os.fdopen(fd, mode))


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; give a new one what ``open()`` would (0666 & ~umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def sha256_file(path: Path) -> tuple[str, int]:
    """Return the hex sha256 of a file's bytes and its size, reading it in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
