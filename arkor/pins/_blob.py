"""Pin a dataset URL: the sha256 of its bytes, else the validator headers the server gave."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arkor.pins._hub import Unresolved

if TYPE_CHECKING:
    import httpx

BLOB_HASH_LIMIT = 1 << 30
"""Bytes ``arkor build`` reads to hash a URL's data; past this it pins by ETag/Last-Modified."""
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BlobPin:
    """One of: ``sha256`` (the bytes were hashed), ``etag`` / ``last_modified`` (too large)."""

    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None


def pin_blob(url: str, token: str | None, *, limit: int | None = None) -> BlobPin:
    """Fetch ``url`` and pin it; raises :class:`~arkor.pins._hub.Unresolved` when it can't be read.

    ``limit`` (default :data:`BLOB_HASH_LIMIT`) is how many bytes to hash at most.
    """
    import httpx

    limit = BLOB_HASH_LIMIT if limit is None else limit
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    digest = hashlib.sha256()
    read = 0
    try:
        with httpx.stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=_TIMEOUT_S
        ) as response:
            if not response.is_success:
                raise Unresolved(f"the server answered HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read > limit:
                    return _by_headers(response.headers, limit)
                digest.update(chunk)
    except httpx.HTTPError as error:
        raise Unresolved(f"the URL could not be read ({type(error).__name__})") from None
    return BlobPin(sha256=digest.hexdigest())


def _by_headers(headers: httpx.Headers, limit: int) -> BlobPin:
    etag = headers.get("etag")
    modified = headers.get("last-modified")
    if etag is None and modified is None:
        raise Unresolved(
            f"it is over {limit:,} bytes, too large to hash at build, and the server sends no "
            "ETag or Last-Modified header"
        )
    return BlobPin(etag=etag, last_modified=None if etag else modified)
