"""A real OpenID Connect provider for sign-in tests: npm's ``oidc-provider`` on loopback.

``scripts/test.sh`` installs the pinned package into ``.tools/``; ``tests/utils/oidc/provider.mjs``
configures it (one public native client ``arkor-cli``, PKCE, device flow, revocation, JWT access
tokens for the resource indicators :data:`AUDIENCE` and :data:`OTHER_AUDIENCE`). The browser
step is driven with httpx through the provider's own login and consent pages, so nothing of the
protocol is imitated here. Without node or the package the tests skip locally and fail under CI
or ``ARKOR_REQUIRE_OIDC=1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from joserfc.jwk import RSAKey

from .ports import free_port
from .process import OutputLines
from .requires import OIDC, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "oidc" / "provider.mjs"
PACKAGE = REPO_ROOT / ".tools" / "node_modules" / "oidc-provider"
INSTALL = "npm install --prefix .tools oidc-provider@9.13.3"

CLIENT_ID = "arkor-cli"
AUDIENCE = "urn:arkor:plane"
OTHER_AUDIENCE = "urn:example:other-api"
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPE = "openid email profile groups offline_access"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def signing_key() -> dict[str, Any]:
    """A fresh private RSA signing key as a JWK with its own ``kid``."""
    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
    jwk: dict[str, Any] = key.as_dict(private=True)
    return jwk


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(verifier, S256 challenge)`` pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []
        self._inputs: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._inputs = {}
            self.forms.append(
                (attributes.get("action", ""), attributes.get("method", "get"), self._inputs)
            )
        elif tag == "input" and self._inputs is not None and "name" in attributes:
            self._inputs[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inputs = None


def _form(page: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """The page's first form that posts (its absolute action and fields), if any."""
    parser = _Forms()
    parser.feed(page.text)
    for action, method, fields in parser.forms:
        if method.lower() == "post":
            return urljoin(str(page.url), action), dict(fields)
    return None


@dataclass
class OidcProvider:
    """A running provider: its issuer, the CLI's client, and drivers for the browser step."""

    issuer: str
    port: int
    access_token_ttl: int
    keys: list[dict[str, Any]]
    client_id: str = CLIENT_ID
    audience: str = AUDIENCE
    other_audience: str = OTHER_AUDIENCE
    redirect_uri: str = REDIRECT_URI
    discovery: dict[str, Any] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None
    _output: OutputLines | None = None

    # --- the process -------------------------------------------------------------------

    def start(self) -> None:
        """Start node on :attr:`port` and wait until discovery answers."""
        node = shutil.which("node")
        if node is None:
            unavailable(
                f"node is not installed; the OpenID provider tests need it ({INSTALL})", OIDC
            )
        environment = {
            **os.environ,
            "OIDC_JWKS": json.dumps({"keys": self.keys}),
            "OIDC_ACCESS_TOKEN_TTL": str(self.access_token_ttl),
            "OIDC_AUDIENCE": self.audience,
            "OIDC_OTHER_AUDIENCE": self.other_audience,
        }
        self._process = subprocess.Popen(
            [node, str(SCRIPT), str(self.port), str(PACKAGE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        assert self._process.stdout is not None
        self._output = OutputLines(self._process.stdout)
        self._output.wait_for(lambda line: "listening on" in line, timeout=30)
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5)
                answer.raise_for_status()
                self.discovery = answer.json()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop node (the in-memory grants and sessions go with it)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._output is not None:
            self._output.rest(timeout=10)
        self._process = None

    def rotate_keys(self) -> None:
        """Restart on the same port signing with a new key; the old one stays published."""
        self.stop()
        self.keys = [signing_key(), *self.keys]
        self.start()

    # --- the browser step ---------------------------------------------------------------

    def authorize_url(
        self,
        *,
        state: str,
        code_challenge: str,
        redirect_uri: str | None = None,
        audience: str | None = None,
    ) -> str:
        """The authorization request a CLI would open in a browser."""
        params = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri or self.redirect_uri,
            "scope": SCOPE,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "resource": audience or self.audience,
        }
        return f"{self.discovery['authorization_endpoint']}?{urlencode(params)}"

    def _walk(self, http: httpx.Client, answer: httpx.Response, user: str) -> httpx.Response | str:
        """Follow redirects and submit the provider's forms as ``user``.

        Returns the first redirect that leaves the provider (a URL), or the last page that has
        no form to submit (the device flow's success page).
        """
        for _ in range(20):
            if answer.is_redirect:
                location = urljoin(str(answer.url), answer.headers["location"])
                if not location.startswith(self.issuer + "/"):
                    return location
                answer = http.get(location)
                continue
            answer.raise_for_status()
            form = _form(answer)
            if form is None:
                return answer
            action, fields = form
            fields.pop("abort", None)
            if "login" in fields:
                fields.update(login=user, password="any")
            answer = http.post(action, data=fields)
        raise AssertionError(f"the provider's pages did not finish within 20 steps for {user}")

    def approve(self, authorize_url: str, user: str, *, deliver: bool = False) -> str:
        """Sign ``user`` in and consent at ``authorize_url``; the redirect back (code, state).

        With ``deliver`` the redirect is also requested, as a browser would, so a CLI's
        loopback listener receives it.
        """
        with httpx.Client(timeout=30) as http:
            result = self._walk(http, http.get(authorize_url), user)
        if not isinstance(result, str):
            raise AssertionError(f"the provider answered a page, not a redirect: {result.text}")
        if deliver:
            httpx.get(result, timeout=30)
        return result

    def approve_device(
        self, user_code: str, user: str, verification_uri: str | None = None
    ) -> None:
        """Enter ``user_code`` on the device page (``verification_uri`` of the device
        authorization answer, default the provider's ``/device``) and sign ``user`` in."""
        with httpx.Client(timeout=30) as http:
            page = http.get(verification_uri or f"{self.issuer}/device")
            form = _form(page)
            assert form is not None, page.text
            action, fields = form
            fields["user_code"] = user_code
            result = self._walk(http, http.post(action, data=fields), user)
        if isinstance(result, str) or "Success" not in result.text:
            raise AssertionError(f"the device sign-in of {user} did not succeed: {result!r}")

    # --- tokens -------------------------------------------------------------------------

    def token_for(self, user: str, *, audience: str | None = None) -> dict[str, Any]:
        """The token response of a full code flow with PKCE for ``user`` (``access_token``,
        ``refresh_token``, ``id_token``, ``expires_in``); the access token is a JWT for
        ``audience`` (default :attr:`audience`)."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        redirect = self.approve(
            self.authorize_url(state=state, code_challenge=challenge, audience=audience), user
        )
        query = parse_qs(urlsplit(redirect).query)
        assert query.get("state") == [state], redirect
        assert "code" in query, redirect
        answer = httpx.post(
            self.discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "client_id": self.client_id,
                "code": query["code"][0],
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
                "resource": audience or self.audience,
            },
            timeout=30,
        )
        answer.raise_for_status()
        tokens: dict[str, Any] = answer.json()
        return tokens

    def access_token(self, user: str, *, audience: str | None = None) -> str:
        """Only the access token of :meth:`token_for`."""
        token: str = self.token_for(user, audience=audience)["access_token"]
        return token


def _require_package() -> None:
    if not (PACKAGE / "package.json").is_file():
        unavailable(f"oidc-provider is not installed; install it with `{INSTALL}`", OIDC)


@contextmanager
def oidc_provider(*, access_token_ttl: int = 300) -> Iterator[OidcProvider]:
    """A provider on a free loopback port for the block; access tokens live ``access_token_ttl`` s."""
    _require_package()
    port = free_port()
    provider = OidcProvider(
        issuer=f"http://127.0.0.1:{port}",
        port=port,
        access_token_ttl=access_token_ttl,
        keys=[signing_key()],
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
