"""Sign-in through an OpenID Connect provider: its discovery document and its access tokens.

The plane never sees a password: a CLI signs in at the provider (authorization code with
PKCE, or the device flow) and presents the provider's access token, a JWT. joserfc checks
it against the provider's published keys (its JWKS): the signature, ``iss``, ``aud``,
``exp`` and ``nbf`` with a small leeway. Keys are cached; a token signed with a key id the
cache lacks makes the plane fetch the set again, at most once per ``oidc_jwks_refetch``
seconds, which is how the provider's key rotation reaches the plane without letting forged
key ids make it hammer the provider.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from arkor.errors import ArkorError, UsageError
from arkor.server._settings import Settings

ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Signature algorithms accepted (never ``none``, never a shared secret)."""
KEYS_MAX_AGE = 3600.0
"""Keys older than this are fetched again before use, so a key the provider withdrew goes."""
MAX_GROUPS = 200
"""Groups read from the groups claim; the rest are ignored."""
_TIMEOUT = 10.0


class OidcError(ArkorError):
    """The configured provider can't be used: unreachable, or not an OpenID provider."""


class InvalidToken(Exception):
    """An access token the plane refuses; the message says why and what to do."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ProviderMetadata:
    """What the plane needs from the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who a verified access token speaks for, as its claims say."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    groups: tuple[str, ...]


def check_settings(settings: Settings) -> None:
    """Refuse combinations of the sign-in settings that can't work."""
    if settings.oidc_issuer and not settings.oidc_client_id:
        raise UsageError(
            f"--oidc-issuer {settings.oidc_issuer} needs --oidc-client-id too (env "
            "ARKOR_OIDC_CLIENT_ID): the id of the public client registered at that provider "
            "for the Arkor CLI."
        )
    if not settings.oidc_issuer:
        for value, flag in (
            (settings.oidc_client_id, "--oidc-client-id"),
            (settings.oidc_audience, "--oidc-audience"),
            (settings.oidc_groups_claim, "--oidc-groups-claim"),
        ):
            if value:
                raise UsageError(
                    f"{flag} {value} is set but no --oidc-issuer (env ARKOR_OIDC_ISSUER): name "
                    "the OpenID provider too, or drop the flag."
                )
        if not settings.anonymous:
            raise UsageError(
                "--no-anonymous (env ARKOR_NO_ANONYMOUS) leaves no way to sign in to a plane "
                "without an OpenID provider. Add --oidc-issuer and --oidc-client-id, or drop it."
            )
    elif not settings.oidc_issuer.startswith(("https://", "http://")):
        raise UsageError(
            f"--oidc-issuer {settings.oidc_issuer} is not an http(s) URL. Give the issuer as "
            "the provider documents it, e.g. https://accounts.example.com."
        )


def discover(issuer: str, *, timeout: float = _TIMEOUT) -> ProviderMetadata:
    """The provider's endpoints, read from ``<issuer>/.well-known/openid-configuration``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    fix = (
        "Check --oidc-issuer (env ARKOR_OIDC_ISSUER): it must be the provider's issuer URL, "
        "reachable from this machine."
    )
    try:
        answer = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        raise OidcError(
            f"The OpenID provider {issuer} could not be reached at {url} ({error}). {fix}"
        ) from None
    if answer.status_code != 200:
        raise OidcError(
            f"The OpenID provider {issuer} answered {answer.status_code} for its discovery "
            f"document at {url}. {fix}"
        )
    try:
        document = answer.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise OidcError(
            f"{url} is not a JSON discovery document, so {issuer} does not look like an "
            f"OpenID provider. {fix}"
        )
    required = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [key for key in required if not isinstance(document.get(key), str)]
    if missing:
        raise OidcError(
            f"The discovery document at {url} lacks {', '.join(missing)}, which the plane needs "
            f"to accept sign-ins from {issuer}. {fix}"
        )
    if document["issuer"].rstrip("/") != issuer.rstrip("/"):
        raise OidcError(
            f"The discovery document at {url} names the issuer {document['issuer']}, not "
            f"{issuer}; tokens would never match. Start the plane with --oidc-issuer "
            f"{document['issuer']}."
        )

    def optional(key: str) -> str | None:
        value = document.get(key)
        return value if isinstance(value, str) else None

    return ProviderMetadata(
        issuer=document["issuer"],
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        device_authorization_endpoint=optional("device_authorization_endpoint"),
        revocation_endpoint=optional("revocation_endpoint"),
    )


def prepare_oidc(settings: Settings) -> ProviderMetadata | None:
    """Check the sign-in settings and, with an issuer, read its discovery document.

    Called before serving, so a provider that can't be used stops the start with its own
    clear error.
    """
    check_settings(settings)
    return discover(settings.oidc_issuer) if settings.oidc_issuer else None


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has a JWS's three parts (the plane's own tokens have one)."""
    return token.count(".") == 2


def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload before its signature is checked: only to pick the error to report."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError):
        claims = None
    if not isinstance(claims, dict):
        raise InvalidToken(
            "The bearer token is not a readable JWT. Sign in again with `arkor login --oauth`."
        )
    return claims


def _when(timestamp: object) -> str:
    if isinstance(timestamp, int | float):
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "an unknown time"


class TokenVerifier:
    """Checks the provider's access tokens; safe to share between the plane's threads."""

    def __init__(
        self,
        metadata: ProviderMetadata,
        *,
        audience: str,
        groups_claim: str | None = None,
        leeway: float = 30.0,
        refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.audience = audience
        self.groups_claim = groups_claim
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")

    def verify(self, token: str) -> Identity:
        """The identity ``token`` speaks for; :class:`InvalidToken` when it is refused."""
        issuer = self.metadata.issuer
        unverified = _unverified_claims(token)
        if unverified.get("iss") != issuer:
            raise InvalidToken(
                f"The access token was issued by `{unverified.get('iss')}`, but this plane "
                f"accepts tokens from {issuer} only. Sign in with `arkor login --oauth`, which "
                "uses this plane's provider."
            )
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
        except JoseError as error:
            raise InvalidToken(
                f"The access token is not a signed JWT ({error.description or error}). Sign in "
                "again with `arkor login --oauth`."
            ) from None
        keys = self._keys_for(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(token, keys, algorithms=list(ALGORITHMS)).claims
        except JoseError as error:
            raise InvalidToken(
                f"The access token's signature does not verify against the keys {issuer} "
                f"publishes ({error.description or error}): it was not issued by that provider. "
                "Sign in again with `arkor login --oauth`."
            ) from None
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=int(self.leeway),
            iss={"essential": True, "value": issuer},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken(
                f"The access token expired at {_when(claims.get('exp'))}. Run `arkor login` "
                "again to sign in anew."
            ) from None
        except MissingClaimError as error:
            raise InvalidToken(
                f"The access token has no `{error.claim}` claim, which this plane needs. Ask "
                f"the administrator of {issuer} to include it, then sign in again."
            ) from None
        except JoseError as error:
            raise InvalidToken(
                f"The access token is not valid now ({error.description or error}). Check this "
                "machine's clock, then sign in again with `arkor login --oauth`."
            ) from None
        audiences = claims.get("aud")
        listed = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(listed, list) or self.audience not in listed:
            raise InvalidToken(
                f"The access token is for the audience {audiences!r}, but this plane expects "
                f"`{self.audience}`. Sign in again with `arkor login --oauth`, which asks the "
                "provider for this plane's audience."
            )
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        email = claims.get("email")
        name = claims.get("name")
        groups: tuple[str, ...] = ()
        if self.groups_claim:
            listed = claims.get(self.groups_claim)
            if isinstance(listed, str):
                listed = [listed]
            if isinstance(listed, list):
                groups = tuple(group for group in listed if isinstance(group, str))[:MAX_GROUPS]
        return Identity(
            issuer=self.metadata.issuer,
            subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            email_verified=claims.get("email_verified") in (True, "true"),
            name=name if isinstance(name, str) and name.strip() else None,
            groups=groups,
        )

    def _keys_for(self, kid: str | None) -> KeySet:
        """The cached key set, fetched again when stale or when it lacks ``kid`` (rate-limited)."""
        with self._lock:
            now = time.monotonic()
            keys = self._keys
            stale = keys is None or now - self._fetched_at > KEYS_MAX_AGE
            unknown = (
                keys is not None
                and kid is not None
                and all(key.kid != kid for key in keys.keys)
                and now - self._fetched_at >= self.refetch_interval
            )
            if stale or unknown:
                keys = self._keys = self._fetch()
                self._fetched_at = now
            assert keys is not None
            return keys

    def _fetch(self) -> KeySet:
        url = self.metadata.jwks_uri
        try:
            answer = httpx.get(url, timeout=_TIMEOUT, follow_redirects=True)
            answer.raise_for_status()
            return KeySet.import_key_set(answer.json())
        except (httpx.HTTPError, ValueError, JoseError) as error:
            raise InvalidToken(
                f"The plane could not read the signing keys of its OpenID provider at {url} "
                f"({error}), so it can't check sign-ins now. Try again shortly; if it persists, "
                "the plane's operator should check that the provider is reachable from it.",
                status=503,
            ) from None
