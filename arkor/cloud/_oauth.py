"""Signing in through a plane's OpenID Connect provider, and keeping that sign-in fresh.

authlib does the protocol: the authorization-code flow with PKCE (S256) and a loopback
redirect (RFC 8252: ``http://127.0.0.1:<ephemeral port>/callback``, ``state`` checked,
one callback served), the device authorization flow (RFC 8628) for machines without a
browser, refreshes and revocation (RFC 7009). Every token request names the plane's
``audience`` as the RFC 8707 ``resource``, so the access token is a JWT for that plane.

The tokens go to the credentials file as :class:`~arkor.cloud.OAuthCredentials` and never
to output or logs. :func:`authorized_client` is where a stored sign-in becomes a client: an
OAuth client refreshes its token when it is within :data:`REFRESH_MARGIN` seconds of
expiry, and once more when the plane answers 401, writing the new tokens back atomically.
"""

from __future__ import annotations

import functools
import http.server
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from arkor.cloud._api_models import OAuthConfig
from arkor.cloud._client import CloudApiClient
from arkor.cloud._credentials import (
    Credentials,
    OAuthCredentials,
    plane_url,
    read_credentials,
    write_credentials,
)
from arkor.cloud._errors import AuthError

SCOPE = "openid email profile offline_access"
"""What the CLI asks for: who you are (for ``arkor whoami``) and a refresh token."""
REFRESH_MARGIN = 60.0
"""Seconds before expiry at which an access token is refreshed rather than sent."""
LOGIN_TIMEOUT = 300.0
"""Seconds the browser sign-in waits for the provider to send the browser back."""
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

Browser = Callable[[str], object]
"""Opens a URL in a browser; a false answer means there was none (``webbrowser.open``)."""
Say = Callable[[str], None]

_DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Arkor</title>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p>"
)


class OAuthSignInError(AuthError):
    """Signing in (or staying signed in) through the provider failed; the message says how on."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)

    def __str__(self) -> str:
        return self.message


def browser_available() -> bool:
    """Whether this machine can show a browser: macOS and Windows can, elsewhere a display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@functools.cache
def _errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """What talking to the provider may raise (its refusal, a garbled answer, no answer),
    and the subset that means no answer. Loaded on first use, like authlib itself."""
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]

    http_errors: tuple[type[Exception], ...] = (httpx.HTTPError,)
    transport: tuple[type[Exception], ...] = (httpx.TransportError,)
    try:  # authlib's httpx client runs on httpx2 where that is installed, else on httpx
        import httpx2
    except ImportError:
        pass
    else:
        http_errors += (httpx2.HTTPError,)
        transport += (httpx2.TransportError,)
    return (AuthlibBaseError, ValueError, *http_errors), transport


def _refusal(error: Exception) -> tuple[str, str] | None:
    """``(error code, description)`` when ``error`` is the provider's OAuth error answer."""
    from authlib.common.errors import AuthlibBaseError

    if isinstance(error, AuthlibBaseError):
        return str(error.error), str(error.description or "")
    return None


def _client(config: OAuthConfig) -> Any:
    """authlib's httpx client for the CLI: public (no secret), PKCE with S256."""
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

    return OAuth2Client(
        client_id=config.client_id,
        code_challenge_method="S256",
        timeout=30.0,
    )


def _reason(error: Exception | tuple[str, str]) -> str:
    """``code: description`` of a provider's refusal, else what went wrong."""
    refusal = error if isinstance(error, tuple) else _refusal(error)
    if refusal is not None:
        code, description = refusal
        return f"{code}: {description}" if description else code
    return str(error) or type(error).__name__


def _failure(
    config: OAuthConfig, doing: str, error: Exception | tuple[str, str]
) -> OAuthSignInError:
    """One paragraph for a provider's refusal (an exception or ``(code, description)``),
    garbled answer or silence while ``doing``."""
    refusal = error if isinstance(error, tuple) else _refusal(error)
    if refusal is not None:
        advice = (
            "Sign-in was refused or cancelled in the browser; run `arkor login --oauth` to try again."
            if refusal[0] == "access_denied"
            else "Run `arkor login --oauth` to sign in again."
        )
        return OAuthSignInError(
            f"The OpenID provider {config.issuer} refused {doing} ({_reason(refusal)}). {advice}"
        )
    assert isinstance(error, Exception)
    if isinstance(error, _errors()[1]):
        return OAuthSignInError(
            f"Cannot reach the OpenID provider {config.issuer} for {doing} ({_reason(error)}). "
            "Check the network and run `arkor login --oauth` again."
        )
    return OAuthSignInError(
        f"The OpenID provider {config.issuer} gave an unusable answer to {doing} "
        f"({_reason(error)}). Run `arkor login --oauth` again; if it keeps failing, tell the "
        "plane's operator."
    )


# --- the browser: authorization code with PKCE and a loopback redirect ---------------------


class _Callback(http.server.BaseHTTPRequestHandler):
    """Takes the provider's redirect to ``/callback``; anything else is a 404."""

    server: _LoopbackServer
    timeout = 10.0
    """Seconds a connection may take to send its request, so none can stall the sign-in."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback" or self.server.answer is not None:
            self.send_error(404)
            return
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.server.answer, self.server.callback = query, self.path
        if not _same(query.get("state", ""), self.server.state):
            title, text = (
                "Sign-in refused",
                "This answer does not belong to the sign-in the CLI started.",
            )
        elif "error" in query:
            title, text = "Sign-in failed", "Return to the terminal for the reason."
        else:
            title, text = "Signed in to Arkor", "You can close this tab and return to the terminal."
        page = _DONE_PAGE.format(title=title, text=text).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line carries the authorization code."""


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison of ``state`` values (any text, as a browser may send it)."""
    return secrets.compare_digest(given.encode(), expected.encode())


class _LoopbackServer(http.server.HTTPServer):
    """127.0.0.1 on a port the system picks; keeps the first ``/callback`` it is sent."""

    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.state = state
        self.answer: dict[str, str] | None = None
        self.callback = ""

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/callback"


def sign_in_with_browser(
    config: OAuthConfig,
    *,
    say: Say,
    open_browser: Browser | None = webbrowser.open,
    timeout: float = LOGIN_TIMEOUT,
) -> dict[str, Any]:
    """The token answer of the authorization-code flow (PKCE, loopback redirect).

    Listens on 127.0.0.1 on an ephemeral port, opens the authorization URL with
    ``open_browser`` in the background (None: only prints it) and serves the one callback
    the provider sends the browser to, within ``timeout`` seconds.
    """
    from authlib.common.security import generate_token  # type: ignore[import-untyped]

    verifier = generate_token(64)
    state = generate_token(32)
    with _LoopbackServer(state) as server, _client(config) as client:
        url, _ = client.create_authorization_url(
            config.authorize_url,
            state=state,
            code_verifier=verifier,
            redirect_uri=server.redirect_uri,
            scope=SCOPE,
            resource=config.audience,
        )
        if open_browser is not None:
            say(
                f"Opening your browser to sign in through {config.issuer}. If it does not open, visit:"
            )
            threading.Thread(target=open_browser, args=(url,), daemon=True).start()
        else:
            say(f"Open this URL in a browser on this machine to sign in through {config.issuer}:")
        say(f"  {url}")
        deadline = time.monotonic() + timeout
        while server.answer is None and (left := deadline - time.monotonic()) > 0:
            server.timeout = left
            server.handle_request()
        answer = server.answer
        if answer is None:
            raise OAuthSignInError(
                f"No answer from the browser sign-in through {config.issuer} within "
                f"{timeout:.0f} s. Run `arkor login --oauth` again and finish signing in in the "
                "browser, or use `arkor login --device` on a machine without one."
            )
        if not _same(answer.get("state", ""), state):
            raise OAuthSignInError(
                f"The answer that reached {server.redirect_uri} does not carry the state this "
                "sign-in sent, so it was refused: it did not come from the sign-in you started. "
                "Run `arkor login --oauth` again."
            )
        if "error" in answer:
            raise _failure(
                config,
                "the sign-in",
                (answer["error"], answer.get("error_description", "")),
            )
        try:
            token: dict[str, Any] = client.fetch_token(
                config.token_url,
                authorization_response=f"http://127.0.0.1:{server.server_address[1]}{server.callback}",
                state=state,
                code_verifier=verifier,
                redirect_uri=server.redirect_uri,
                resource=config.audience,
            )
        except _errors()[0] as error:
            raise _failure(config, "the sign-in", error) from None
    return token


# --- no browser: the device authorization flow ---------------------------------------------


def sign_in_with_device(
    config: OAuthConfig, *, say: Say, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """The token answer of the device flow: print where to go and the code, then poll.

    Polls every ``interval`` seconds the provider gives (5 by default), 5 s slower after
    each ``slow_down``, until the device code expires.
    """
    if config.device_authorization_url is None:
        raise OAuthSignInError(
            f"The OpenID provider {config.issuer} offers no device sign-in. Run `arkor login "
            "--oauth` on a machine with a browser, or `arkor login --oauth --no-browser` and "
            "open the printed URL in a browser on this machine."
        )
    with _client(config) as client:
        try:
            answer = client.request(
                "POST",
                config.device_authorization_url,
                data={"client_id": config.client_id, "scope": SCOPE, "resource": config.audience},
                withhold_token=True,
            )
            device: dict[str, Any] = answer.json() if answer.content else {}
            if "error" in device:
                refusal = (str(device["error"]), str(device.get("error_description") or ""))
                raise _failure(config, "the device sign-in", refusal)
            answer.raise_for_status()
            device_code, user_code = str(device["device_code"]), str(device["user_code"])
            page = str(device.get("verification_uri_complete") or device["verification_uri"])
            interval = float(device.get("interval") or 5)
            expires_in = float(device.get("expires_in") or 600)
        except _errors()[0] + (KeyError, TypeError) as error:
            raise _failure(config, "the device sign-in", error) from None
        say(f"To sign in through {config.issuer}, open {page} in any browser")
        say(f"and confirm the code {user_code}. Waiting for you to finish there…")
        deadline = time.monotonic() + expires_in
        while True:
            sleep(interval)
            try:
                token: dict[str, Any] = client.fetch_token(
                    config.token_url,
                    grant_type=DEVICE_GRANT,
                    device_code=device_code,
                    resource=config.audience,
                )
            except _errors()[0] as error:
                code = (_refusal(error) or ("", ""))[0]
                if code == "slow_down":
                    interval += 5
                elif code != "authorization_pending":
                    raise _failure(config, "the device sign-in", error) from None
            else:
                return token
            if time.monotonic() + interval > deadline:
                raise OAuthSignInError(
                    f"The device sign-in through {config.issuer} was not confirmed before its "
                    f"code expired ({expires_in:.0f} s). Run `arkor login --device` again."
                )


# --- the tokens as a credentials record -----------------------------------------------------


def oauth_credentials(
    token: Mapping[str, Any], config: OAuthConfig, *, url: str, plane_id: str | None
) -> OAuthCredentials:
    """The record to store for a token answer from ``config``'s provider for the plane ``url``."""
    expires_at = token.get("expires_at")
    if expires_at is None and token.get("expires_in") is not None:
        expires_at = time.time() + float(token["expires_in"])
    return OAuthCredentials(
        access_token=str(token["access_token"]),
        refresh_token=token.get("refresh_token"),
        expires_at=float(expires_at) if expires_at is not None else None,
        issuer=config.issuer,
        audience=config.audience,
        client_id=config.client_id,
        arkor_cloud_api_url=url,
        plane_id=plane_id,
    )


def expiring(credentials: OAuthCredentials, margin: float = REFRESH_MARGIN) -> bool:
    """Whether the access token expires within ``margin`` seconds (unknown expiry: no)."""
    return credentials.expires_at is not None and credentials.expires_at - time.time() < margin


def _stored(credentials: OAuthCredentials) -> Credentials | None:
    """The record now in the file for ``credentials``' plane (another command may have refreshed it)."""
    if credentials.plane_id is not None:
        return read_credentials(plane_id=credentials.plane_id)
    return read_credentials(plane_url(credentials))


def refresh_oauth(credentials: OAuthCredentials, config: OAuthConfig) -> OAuthCredentials:
    """New tokens for ``credentials`` from ``config``'s token endpoint, written back to the file.

    When another command already refreshed this sign-in (the file holds a newer refresh
    token), that record is used instead, or renewed in turn: a refresh token is spent when
    used. A sign-in that
    cannot be refreshed (revoked, expired, another provider now) raises
    :class:`OAuthSignInError`, which tells the user to run ``arkor login`` again.
    """
    plane = plane_url(credentials)
    stored = _stored(credentials)
    if (
        isinstance(stored, OAuthCredentials)
        and stored.issuer == credentials.issuer
        and stored.refresh_token != credentials.refresh_token
    ):
        if not expiring(stored):
            return stored
        credentials = stored
    if credentials.refresh_token is None or credentials.issuer != config.issuer:
        why = (
            "it has no refresh token"
            if credentials.refresh_token is None
            else f"the plane now signs people in through {config.issuer}, not {credentials.issuer}"
        )
        raise OAuthSignInError(
            f"Your sign-in to {plane} has expired and cannot be renewed ({why}). Run `arkor "
            "login` again."
        )
    try:
        with _client(config) as client:
            token: dict[str, Any] = client.refresh_token(
                config.token_url,
                refresh_token=credentials.refresh_token,
                resource=config.audience,
            )
    except _errors()[0] as error:
        raise OAuthSignInError(
            f"Your sign-in to {plane} through {config.issuer} could not be renewed "
            f"({_reason(error)}): "
            "it was revoked, expired or signed out elsewhere. Run `arkor login` again."
        ) from None
    fresh = oauth_credentials(
        {**token, "refresh_token": token.get("refresh_token") or credentials.refresh_token},
        config,
        url=plane,
        plane_id=credentials.plane_id,
    )
    if isinstance(stored, OAuthCredentials) and stored.refresh_token == credentials.refresh_token:
        write_credentials(fresh, make_default=False)
    return fresh


def revoke_oauth(credentials: OAuthCredentials, config: OAuthConfig) -> str | None:
    """Revoke the refresh token at the provider (RFC 7009); None when done, else why not."""
    token = credentials.refresh_token or credentials.access_token
    if config.revocation_url is None:
        return f"{config.issuer} offers no revocation endpoint"
    hint = "refresh_token" if credentials.refresh_token else "access_token"
    try:
        with _client(config) as client:
            answer = client.revoke_token(config.revocation_url, token=token, token_type_hint=hint)
    except _errors()[1] as error:
        return f"{config.issuer} could not be reached: {_reason(error)}"
    if not answer.is_success:
        return f"{config.issuer} answered HTTP {answer.status_code}"
    return None


# --- a client that keeps the sign-in fresh ---------------------------------------------------


class _RefreshingClient(CloudApiClient):
    """A :class:`CloudApiClient` sending an OAuth access token, renewed near expiry and on 401.

    The provider's token endpoint comes from the plane itself (``GET /v1/auth/cli/config``),
    asked only when a refresh is due.
    """

    def __init__(self, base_url: str, credentials: OAuthCredentials) -> None:
        super().__init__(base_url, credentials.access_token)
        self.credentials = credentials
        self._lock = threading.Lock()

    def _renew(self, rejected: str | None = None) -> None:
        """Refresh unless another thread already replaced the token (``rejected``: the one refused)."""
        with self._lock:
            if rejected is not None and self.credentials.access_token != rejected:
                return
            if rejected is None and not expiring(self.credentials):
                return
            config = self.cli_config().oauth
            if config is None:
                raise OAuthSignInError(
                    f"The plane at {self.base_url} no longer offers OAuth sign-in, so your "
                    "sign-in there cannot be renewed. Run `arkor login` again."
                )
            self.credentials = refresh_oauth(self.credentials, config)
            self.token = self.credentials.access_token

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        auth: bool,
        timeout: float | None,
    ) -> httpx.Request:
        if auth and expiring(self.credentials):
            self._renew()
        return super()._request(method, path, params, json, content, headers, auth, timeout)

    def _send(self, request: httpx.Request, *, retry: bool, stream: bool) -> httpx.Response:
        try:
            return super()._send(request, retry=retry, stream=stream)
        except AuthError as error:
            sent = request.headers.get("Authorization", "")
            if error.status != 401 or not sent.startswith("Bearer "):
                raise
            self._renew(rejected=sent.removeprefix("Bearer "))
        request.headers["Authorization"] = f"Bearer {self.token}"
        return super()._send(request, retry=retry, stream=stream)


def authorized_client(credentials: Credentials, *, via: str | None = None) -> CloudApiClient:
    """A client of the plane that issued ``credentials`` (reached at ``via``), carrying them.

    The one place a stored sign-in becomes a client: an OAuth one is refreshed when it
    expires within a minute and once after a 401, and the new tokens are written back.
    """
    url = via or plane_url(credentials)
    if isinstance(credentials, OAuthCredentials):
        return _RefreshingClient(url, credentials)
    return CloudApiClient(url, credentials.bearer_token)


__all__ = [
    "LOGIN_TIMEOUT",
    "REFRESH_MARGIN",
    "SCOPE",
    "OAuthSignInError",
    "authorized_client",
    "browser_available",
    "expiring",
    "oauth_credentials",
    "refresh_oauth",
    "revoke_oauth",
    "sign_in_with_browser",
    "sign_in_with_device",
]
