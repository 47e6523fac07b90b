"""Who the client is on each control plane, kept in ``~/.arkor/credentials.json`` (0600).

A token belongs to the plane that issued it, so the file holds one record per plane URL.
With one plane it is the plain record the TypeScript SDK writes::

    {"mode": "anon", "token": "…", "anonymousId": "…", "arkorCloudApiUrl": "…", "orgSlug": "…"}

With several it is ``{"default": URL, "planes": {URL: record, …}}``, where ``default`` is
the plane the last ``arkor login`` chose. Both shapes are read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, TypeAdapter, ValidationError

from arkor._fs import atomic_write_text
from arkor._home import arkor_home
from arkor.cloud._errors import CredentialsError
from arkor.cloud._models import WireModel

DEFAULT_ARKOR_CLOUD_API_URL = "http://127.0.0.1:8765"
"""The local plane (``arkor serve``): the target when nothing else is configured."""

_FILE_MODE = 0o600


class AnonymousCredentials(WireModel):
    """An anonymous identity minted by ``POST /v1/auth/anonymous`` on one plane."""

    mode: Literal["anon"] = "anon"
    token: str
    anonymous_id: str
    arkor_cloud_api_url: str
    org_slug: str

    @property
    def bearer_token(self) -> str:
        return self.token


class OAuthCredentials(WireModel):
    """An OAuth sign-in; older records may lack the plane URL (then: the default plane)."""

    mode: Literal["oauth"] = "oauth"
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    issuer: str | None = None
    audience: str | None = None
    client_id: str | None = None
    arkor_cloud_api_url: str | None = None

    @property
    def bearer_token(self) -> str:
        return self.access_token


Credentials = Annotated[AnonymousCredentials | OAuthCredentials, Field(discriminator="mode")]
_RECORD = TypeAdapter[Credentials](Credentials)
_PLANES = TypeAdapter[dict[str, Credentials]](dict[str, Credentials])


def normalize_url(url: str) -> str:
    """One spelling per plane: scheme and host lower-cased, no trailing slash."""
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )


def plane_url(credentials: Credentials) -> str:
    """The plane that issued ``credentials``, the only one their token may be sent to."""
    return normalize_url(credentials.arkor_cloud_api_url or DEFAULT_ARKOR_CLOUD_API_URL)


def credentials_path() -> Path:
    """``~/.arkor/credentials.json`` (under ``ARKOR_HOME`` when set)."""
    return arkor_home() / "credentials.json"


def default_arkor_cloud_api_url(credentials: Credentials | None = None) -> str:
    """The plane to target: ``ARKOR_CLOUD_API_URL``, else the credentials' plane, else the local one."""
    configured = os.environ.get("ARKOR_CLOUD_API_URL", "").strip()
    if configured:
        return normalize_url(configured)
    if credentials is not None:
        return plane_url(credentials)
    return DEFAULT_ARKOR_CLOUD_API_URL


def read_credentials(base_url: str | None = None) -> Credentials | None:
    """The record for ``base_url`` (default: the default plane's), or None when there is none.

    A file others can read is tightened to 0600 on the way.
    """
    planes, default = _load()
    key = normalize_url(base_url) if base_url is not None else default
    return planes.get(key) if key is not None else None


def write_credentials(credentials: Credentials, *, make_default: bool = True) -> Path:
    """Store ``credentials`` for their plane, replacing that plane's record only.

    The file is written atomically with mode 0600. ``make_default=False`` keeps the current
    default plane (a one-off target must not redirect later commands).
    """
    planes, default = _load()
    key = plane_url(credentials)
    planes[key] = credentials
    if make_default or default not in planes:
        default = key
    document: dict[str, Any]
    if len(planes) == 1:
        document = credentials.to_wire()
    else:
        document = {
            "default": default,
            "planes": {url: record.to_wire() for url, record in sorted(planes.items())},
        }
    path = credentials_path()
    atomic_write_text(path, json.dumps(document, indent=2) + "\n", mode=_FILE_MODE)
    return path


def delete_credentials() -> bool:
    """Remove the credentials file (every plane's record); False when there was none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def request_anonymous_token(
    base_url: str, kind: Literal["cli"] = "cli", *, via: str | None = None
) -> AnonymousCredentials:
    """Mint a new anonymous identity on the plane at ``base_url`` (not persisted).

    ``via`` is where to reach that plane now, when it differs from the URL that names it
    (an embedded plane on an ephemeral port serving the local plane's database).
    """
    from arkor.cloud._client import CloudApiClient

    url = normalize_url(base_url)
    with CloudApiClient(via or url) as client:
        minted = client.anonymous_token(kind)
    return AnonymousCredentials(
        token=minted.token,
        anonymous_id=minted.anonymous_id,
        arkor_cloud_api_url=url,
        org_slug=minted.personal_org.slug,
    )


def ensure_credentials(base_url: str | None = None, *, via: str | None = None) -> Credentials:
    """The credentials for ``base_url``, minting and storing an anonymous identity if none.

    ``base_url`` defaults to :func:`default_arkor_cloud_api_url`. A plane never receives
    another plane's token: a new target gets its own identity, and the default plane
    stays as it was.
    """
    url = normalize_url(base_url) if base_url else default_arkor_cloud_api_url(read_credentials())
    existing = read_credentials(url)
    if existing is not None:
        return existing
    fresh = request_anonymous_token(url, via=via)
    write_credentials(fresh, make_default=read_credentials() is None)
    return fresh


def _load() -> tuple[dict[str, Credentials], str | None]:
    """Every plane's record, and the default plane, from the file (empty when absent)."""
    path = credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except OSError as error:
        raise CredentialsError(f"Cannot read {path}: {error.strerror}.") from error
    _tighten(path)
    try:
        document = json.loads(text)
        if isinstance(document, dict) and "planes" in document:
            planes = {
                normalize_url(url): record
                for url, record in _PLANES.validate_python(document["planes"]).items()
            }
            default = document.get("default")
            return planes, normalize_url(default) if isinstance(default, str) else None
        record = _RECORD.validate_python(document)
    except (ValueError, ValidationError) as error:
        raise CredentialsError(
            f"{path} is not a valid Arkor credentials file ({_reason(error)}). "
            "Run `arkor logout` and then `arkor login` to replace it."
        ) from error
    return {plane_url(record): record}, plane_url(record)


def _tighten(path: Path) -> None:
    """Credentials readable by others are fixed to 0600 (best effort: we may not own them)."""
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(_FILE_MODE)
    except OSError:
        pass


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(error)


__all__ = [
    "DEFAULT_ARKOR_CLOUD_API_URL",
    "AnonymousCredentials",
    "Credentials",
    "OAuthCredentials",
    "credentials_path",
    "default_arkor_cloud_api_url",
    "delete_credentials",
    "ensure_credentials",
    "normalize_url",
    "plane_url",
    "read_credentials",
    "request_anonymous_token",
    "write_credentials",
]
