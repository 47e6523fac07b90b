"""Errors of the cloud room: what a plane answered, or why no answer came.

::

    ArkorError
    ├── CloudApiError              a non-2xx answer: .status, .message ({error}), .body
    │   ├── AuthError              401 / 403: the token is missing, wrong or not allowed
    │   ├── NotFoundError          404 (also: the caller is outside the org)
    │   ├── ConflictError          409: the slug exists, the job is already terminal, ...
    │   ├── UpgradeRequiredError   426: this arkor is older than the plane accepts
    │   └── PlaneUnreachableError  no answer at all (status None): refused, reset, timed out
    ├── CredentialsError           the credentials file is unreadable or not a regular file
    └── ProjectStateError          .arkor/state.json does not fit the signed-in identity

All of them exit 1 (runtime failures) but ``CredentialsError``, which exits 2 like any
other bad config file.
"""

from __future__ import annotations

from typing import Any

from arkor._version import __version__
from arkor.errors import ArkorError


class CloudApiError(ArkorError):
    """A control plane answered with a non-2xx status.

    ``message`` is the plane's ``{error}`` text and ``body`` its decoded JSON (or text),
    kept verbatim so callers can branch on extra fields.
    """

    def __init__(self, status: int | None, message: str, body: Any = None) -> None:
        super().__init__(status, message, body)
        self.status = status
        self.message = message
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


class AuthError(CloudApiError):
    """401/403: signing in again (or with another identity) is the way out."""

    def __str__(self) -> str:
        return f"{super().__str__()}. Run `arkor login` to sign in again."


class NotFoundError(CloudApiError):
    """404: no such resource, or it belongs to an org the caller is not in."""


class ConflictError(CloudApiError):
    """409: the request clashes with what exists (a taken slug, a finished job)."""


class UpgradeRequiredError(CloudApiError):
    """426: the plane refuses this client version; the body may name the minimum."""

    def __init__(
        self,
        status: int | None,
        message: str,
        body: Any = None,
        *,
        min_version: str | None = None,
    ) -> None:
        super().__init__(status, message, body)
        self.min_version = min_version

    def __str__(self) -> str:
        text = super().__str__()
        if "pip install" in self.message:  # the plane already says how to upgrade
            return text
        needed = f" (it needs {self.min_version} or newer)" if self.min_version else ""
        return (
            f"{text}. This arkor {__version__} is too old for the plane{needed}; upgrade "
            "with `pip install -U arkor`."
        )


class PlaneUnreachableError(CloudApiError):
    """No HTTP answer came back: the plane is down, the URL is wrong, or the link dropped."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(None, reason)
        self.url = url

    def __str__(self) -> str:
        return (
            f"Cannot reach the Arkor plane at {self.url}: {self.message}. Start a local one "
            "with `arkor serve`, or point ARKOR_CLOUD_API_URL at a running plane."
        )


class CredentialsError(ArkorError):
    """The credentials file cannot be used as it is: fix or replace the file (exit 2)."""

    exit_code = 2


class ProjectStateError(ArkorError):
    """The project's ``.arkor/state.json`` cannot be used by the signed-in identity."""


def error_for_status(
    status: int, message: str, body: Any = None, *, min_version: str | None = None
) -> CloudApiError:
    """The most specific :class:`CloudApiError` for an HTTP status."""
    if status == 426:
        return UpgradeRequiredError(status, message, body, min_version=min_version)
    cls = {401: AuthError, 403: AuthError, 404: NotFoundError, 409: ConflictError}.get(
        status, CloudApiError
    )
    return cls(status, message, body)


__all__ = [
    "AuthError",
    "CloudApiError",
    "ConflictError",
    "CredentialsError",
    "NotFoundError",
    "PlaneUnreachableError",
    "ProjectStateError",
    "UpgradeRequiredError",
    "error_for_status",
]
