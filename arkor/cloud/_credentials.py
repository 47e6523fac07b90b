"""Who the client is on each control plane, kept in ``~/.arkor/credentials.json`` (0600).

A token belongs to the plane that issued it. A plane is known by the ``planeId`` it
announces on ``GET /v1/auth/cli/config`` (stable for its database), so the embedded plane
and ``arkor serve`` on any port over one home are one plane with one record, and a plane
with another id never receives that record's token, whatever its URL. With one plane the
file is the plain record the TypeScript SDK writes, plus ``planeId``::

    {"mode": "anon", "token": "…", "anonymousId": "…", "arkorCloudApiUrl": "…",
     "orgSlug": "…", "planeId": "plane_…"}

With several it is ``{"default": KEY, "planes": {KEY: record, …}}``, KEY being the plane
id (or the URL, for a plane that announces none), ``default`` the plane the last
``arkor login`` chose. Files written before planes had ids (records without ``planeId``,
keyed by URL) are read too: such a record is taken over by the plane found at its URL the
first time that plane is reached there, then pinned to its id.

The local plane's home holds ``local/home-key.json`` (0600, written by the plane): its
plane id and a key. Only a client that can read the home has it, and it is sent only to
that plane, over loopback, to sign in as the identity that owns the home.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, TypeAdapter, ValidationError

from arkor._env import DEFAULT_PORT
from arkor._fs import atomic_write_text
from arkor._home import arkor_home
from arkor.cloud._errors import CredentialsError
from arkor.cloud._models import WireModel

DEFAULT_ARKOR_CLOUD_API_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
"""The local plane (``arkor serve``): the target when nothing else is configured."""

HOME_KEY_FILENAME = "home-key.json"
"""In the plane's state folder (``<home>/local``): ``{"planeId": …, "key": …}``, mode 0600."""

_FILE_MODE = 0o600
_MAX_FILE_BYTES = 1 << 20


class AnonymousCredentials(WireModel):
    """An anonymous identity minted by ``POST /v1/auth/anonymous`` on one plane."""

    mode: Literal["anon"] = "anon"
    token: str
    anonymous_id: str
    arkor_cloud_api_url: str
    org_slug: str
    plane_id: str | None = None

    @property
    def bearer_token(self) -> str:
        return self.token


class OAuthCredentials(WireModel):
    """A sign-in through the plane's OpenID provider (``arkor login --oauth``).

    ``access_token`` is the provider's JWT for the plane's ``audience``; ``expires_at`` is
    its expiry in epoch seconds, and ``refresh_token`` renews it (see
    :func:`~arkor.cloud.authorized_client`). Older records may lack the plane URL (then:
    the default plane).
    """

    mode: Literal["oauth"] = "oauth"
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    issuer: str | None = None
    audience: str | None = None
    client_id: str | None = None
    arkor_cloud_api_url: str | None = None
    plane_id: str | None = None

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
    """Where the plane that issued ``credentials`` was reached when they were stored."""
    return normalize_url(credentials.arkor_cloud_api_url or DEFAULT_ARKOR_CLOUD_API_URL)


def plane_key(credentials: Credentials) -> str:
    """The key of ``credentials`` in the file: their plane's id, or its URL when it has none."""
    return credentials.plane_id or plane_url(credentials)


def credentials_path() -> Path:
    """``~/.arkor/credentials.json`` (under ``ARKOR_HOME`` when set)."""
    return arkor_home() / "credentials.json"


def home_key_path() -> Path:
    """The local plane's home key in this home (``<home>/local/home-key.json``)."""
    return arkor_home() / "local" / HOME_KEY_FILENAME


def read_home_key(path: Path | None = None) -> tuple[str, str] | None:
    """``(plane id, key)`` from a home key file, or None when it is absent or unusable."""
    try:
        raw = _read_regular(path or home_key_path())
        document = json.loads(raw) if raw is not None else None
    except (CredentialsError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    plane_id, key = document.get("planeId"), document.get("key")
    if isinstance(plane_id, str) and isinstance(key, str) and plane_id and key:
        return plane_id, key
    return None


def home_plane_id() -> str | None:
    """The id of the plane whose home is this one (from its home key), or None."""
    found = read_home_key()
    return found[0] if found is not None else None


def default_arkor_cloud_api_url(credentials: Credentials | None = None) -> str:
    """The plane to target: ``ARKOR_CLOUD_API_URL``, else the credentials' plane, else the local one."""
    configured = os.environ.get("ARKOR_CLOUD_API_URL", "").strip()
    if configured:
        return normalize_url(configured)
    if credentials is not None:
        return plane_url(credentials)
    return DEFAULT_ARKOR_CLOUD_API_URL


def read_credentials(
    base_url: str | None = None, *, plane_id: str | None = None
) -> Credentials | None:
    """A stored record, or None: the plane ``plane_id``'s, else the one last stored for
    ``base_url``, else (neither given) the default plane's.

    Reading by URL alone does not say which plane answers there now; to pick a token to
    send, use :func:`ensure_credentials` or :func:`find_credentials`, which ask the plane.
    """
    planes, default = _load()
    if plane_id is not None:
        return planes.get(plane_id)
    if base_url is None:
        return planes.get(default) if default is not None else None
    url = normalize_url(base_url)
    matching = [key for key, record in planes.items() if plane_url(record) == url]
    if not matching:
        return None
    return planes[default] if default is not None and default in matching else planes[matching[-1]]


def write_credentials(credentials: Credentials, *, make_default: bool = True) -> Path:
    """Store ``credentials`` for their plane, replacing that plane's record only.

    The file is written atomically with mode 0600. ``make_default=False`` keeps the current
    default plane (a one-off target must not redirect later commands).
    """
    planes, default = _load()
    key = plane_key(credentials)
    planes.pop(key, None)
    planes[key] = credentials
    if make_default or default not in planes:
        default = key
    return _save(planes, default)


def forget_credentials(key: str) -> bool:
    """Remove one plane's record (by :func:`plane_key`); the file goes with the last one."""
    planes, default = _load()
    if planes.pop(key, None) is None:
        return False
    if not planes:
        delete_credentials()
        return True
    _save(planes, default if default in planes else next(reversed(planes)))
    return True


def delete_credentials() -> bool:
    """Remove the credentials file (every plane's record); False when there was none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def request_anonymous_token(
    base_url: str,
    kind: Literal["cli"] = "cli",
    *,
    via: str | None = None,
    plane_id: str | None = None,
    home_key: str | None = None,
    current: Credentials | None = None,
) -> AnonymousCredentials:
    """Mint an anonymous identity on the plane at ``base_url`` (not persisted).

    ``via`` is where to reach that plane now, when it differs from the URL that names it
    (an embedded plane on an ephemeral port). With ``home_key`` the plane answers with a
    new token for the identity that owns its home; ``current`` (that plane's present
    sign-in) becomes that owner if the plane has none yet.
    """
    from arkor.cloud._client import CloudApiClient

    url = normalize_url(base_url)
    token = current.bearer_token if current is not None and home_key is not None else None
    with CloudApiClient(via or url, token) as client:
        minted = client.anonymous_token(kind, home_key=home_key)
    return AnonymousCredentials(
        token=minted.token,
        anonymous_id=minted.anonymous_id,
        arkor_cloud_api_url=url,
        org_slug=minted.personal_org.slug,
        plane_id=plane_id,
    )


def find_credentials(
    base_url: str, plane_id: str | None, *, via: str | None = None
) -> Credentials | None:
    """The record of the plane ``plane_id`` (found at ``base_url``), or None.

    A record from before planes had ids, stored for ``base_url``, is taken over by this
    plane and pinned to its id; on the home's own plane that sign-in also becomes the
    home's owner, if it has none yet.
    """
    url = normalize_url(base_url)
    planes, default = _load()
    if plane_id is None:
        return planes.get(url)
    record = planes.get(plane_id)
    if record is not None:
        return record
    legacy = planes.get(url)
    if legacy is None or legacy.plane_id is not None:
        return None
    home_key = _home_key_for(plane_id, via or url)
    adopted: Credentials
    adopted = legacy.model_copy(update={"plane_id": plane_id})
    if home_key is not None and isinstance(legacy, AnonymousCredentials):
        claimed = request_anonymous_token(
            url, via=via, plane_id=plane_id, home_key=home_key, current=legacy
        )
        if claimed.anonymous_id == legacy.anonymous_id:  # else the home has another owner
            adopted = claimed
    del planes[url]
    planes[plane_id] = adopted
    _save(planes, plane_id if default in (url, None) else default)
    return adopted


def ensure_credentials(base_url: str | None = None, *, via: str | None = None) -> Credentials:
    """The credentials for the plane at ``base_url``, signing in when there are none.

    ``base_url`` defaults to :func:`default_arkor_cloud_api_url`. The plane is asked for
    its id first (``via`` reaches it at another address), and only that plane's record is
    used: a plane with another id, even at the same URL, gets its own identity. On this
    home's own plane (reached over loopback) the sign-in is the home owner's identity, the
    one every earlier sign-in here had; elsewhere it is a new anonymous identity, or, on a
    plane that mints none, an error that says to run ``arkor login --oauth``. Turn the
    result into a client with :func:`~arkor.cloud.authorized_client`, which keeps an OAuth
    sign-in fresh.
    """
    from arkor.cloud._client import CloudApiClient

    url = normalize_url(base_url) if base_url else default_arkor_cloud_api_url(read_credentials())
    with CloudApiClient(via or url) as client:
        config = client.cli_config()
    existing = find_credentials(url, config.plane_id, via=via)
    if existing is not None:
        return existing
    if not config.anonymous and config.oauth is not None:
        from arkor.cloud._oauth import OAuthSignInError

        raise OAuthSignInError(
            f"Not signed in to {url}, and that plane signs people in only through "
            f"{config.oauth.issuer}. Run `arkor login --oauth` first."
        )
    fresh = sign_in(url, config.plane_id, via=via)
    write_credentials(fresh, make_default=read_credentials() is None)
    return fresh


def sign_in(
    base_url: str,
    plane_id: str | None,
    *,
    via: str | None = None,
    current: Credentials | None = None,
) -> AnonymousCredentials:
    """A new sign-in to the plane ``plane_id`` (not persisted): the home owner's identity
    on this home's own plane, else a new anonymous one."""
    home_key = _home_key_for(plane_id, via or base_url) if plane_id is not None else None
    return request_anonymous_token(
        base_url, via=via, plane_id=plane_id, home_key=home_key, current=current
    )


def is_home_plane(plane_id: str | None) -> bool:
    """Whether ``plane_id`` is the plane whose home is this one (its owner can always sign in)."""
    return plane_id is not None and plane_id == home_plane_id()


def _home_key_for(plane_id: str, address: str) -> str | None:
    """This home's key, when ``plane_id`` is this home's plane and ``address`` is loopback."""
    found = read_home_key()
    if found is None or found[0] != plane_id or not _is_loopback(address):
        return None
    return found[1]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _save(planes: dict[str, Credentials], default: str) -> Path:
    document: dict[str, Any]
    if len(planes) == 1:
        document = next(iter(planes.values())).to_wire()
    else:
        document = {
            "default": default,
            "planes": {key: record.to_wire() for key, record in sorted(planes.items())},
        }
    path = credentials_path()
    atomic_write_text(path, json.dumps(document, indent=2) + "\n", mode=_FILE_MODE)
    return path


def _load() -> tuple[dict[str, Credentials], str | None]:
    """Every plane's record by :func:`plane_key`, and the default plane's key (empty when absent)."""
    path = credentials_path()
    raw = _read_regular(path)
    if raw is None:
        return {}, None
    try:
        document = json.loads(raw.decode("utf-8"))
        if isinstance(document, dict) and "planes" in document:
            records = _PLANES.validate_python(document["planes"]).values()
            planes = {plane_key(record): record for record in records}
            default = document.get("default")
            if not isinstance(default, str):
                return planes, None
            if default not in planes:
                default = normalize_url(default)  # a file keyed by URL
            return planes, default if default in planes else None
        record = _RECORD.validate_python(document)
    except RecursionError:
        raise CredentialsError(
            f"{path} is not a valid Arkor credentials file (its JSON is nested too deeply). "
            "Delete it and run `arkor login` to sign in again."
        ) from None
    except (ValueError, ValidationError) as error:
        raise CredentialsError(
            f"{path} is not a valid Arkor credentials file ({_reason(error)}). "
            "Delete it and run `arkor login` to sign in again."
        ) from error
    return {plane_key(record): record}, plane_key(record)


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` when it is a regular file (None when absent).

    Opened without following a link and without blocking (a FIFO never hangs), then
    checked with ``fstat``; a file others can read is tightened to 0600 through the same
    descriptor, so no link target is ever changed.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if path.is_symlink():
        raise _not_regular(path, "a symbolic link")
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _not_regular(path, "a symbolic link") from None
        raise CredentialsError(
            f"Cannot read {path}: {error.strerror}. Check its permissions, or remove it and "
            "run `arkor login`."
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, _kind(info.st_mode))
        if info.st_size > _MAX_FILE_BYTES:
            raise CredentialsError(
                f"{path} is {info.st_size} bytes, far more than Arkor credentials take (at "
                f"most {_MAX_FILE_BYTES}). Remove it and run `arkor login`."
            )
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == _uid():
            os.fchmod(fd, _FILE_MODE)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as error:
        raise CredentialsError(f"Cannot read {path}: {error.strerror}.") from None
    finally:
        os.close(fd)


def _not_regular(path: Path, kind: str) -> CredentialsError:
    return CredentialsError(
        f"{path} is {kind}, not a regular file. Arkor reads credentials only from a plain file "
        "in its home and never follows or changes what such a path points to. Remove it (or "
        "move the real file there) and run `arkor login`."
    )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 text: the byte at offset {error.start} cannot be decoded"
    return str(error)


__all__ = [
    "DEFAULT_ARKOR_CLOUD_API_URL",
    "HOME_KEY_FILENAME",
    "AnonymousCredentials",
    "Credentials",
    "OAuthCredentials",
    "credentials_path",
    "default_arkor_cloud_api_url",
    "delete_credentials",
    "ensure_credentials",
    "find_credentials",
    "forget_credentials",
    "home_key_path",
    "home_plane_id",
    "is_home_plane",
    "normalize_url",
    "plane_key",
    "plane_url",
    "read_credentials",
    "read_home_key",
    "request_anonymous_token",
    "sign_in",
    "write_credentials",
]
