"""Sign-in bootstrap and identity: the plane's id, anonymous CLI tokens, the home owner.

A plane is one identity (DESIGN.md decision 11): its id lives in its database, so every
plane serving that database, on any port, announces the same one. Its home holds a key
file (0600) naming that id; a client that can read it has the home, and so the database,
and presenting the key signs it in as the identity that owns the home, however often it
logged out.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from fastapi import APIRouter, Request, Response

from arkor._fs import atomic_write_text
from arkor.cloud import (
    AnonymousToken,
    AnonymousTokenRequest,
    CliConfig,
    Me,
    OAuthConfig,
    Org,
    TokenInfo,
    TokenList,
    User,
)
from arkor.cloud._credentials import HOME_KEY_FILENAME, read_home_key
from arkor.server import _orgs as orgs
from arkor.server import _store as store
from arkor.server._errors import SCOPED_ERRORS, ApiError, not_found
from arkor.server._ratelimit import limit_per_address
from arkor.server.deps import PlaneDep, PrincipalDep, StoreDep

router = APIRouter(prefix="/v1", tags=["auth"], responses=SCOPED_ERRORS)


@router.get("/auth/cli/config", response_model=CliConfig)
def cli_config(db: StoreDep, plane: PlaneDep) -> CliConfig:
    """This plane's id and sign-in methods: anonymous identities unless switched off, and
    the OpenID provider whose access tokens it accepts, if it has one."""
    plane_id = store.plane_identity(db=db)
    _ensure_home_key(plane.settings.state_dir / HOME_KEY_FILENAME, plane_id)
    oauth = None
    if plane.oidc is not None:
        provider = plane.oidc.metadata
        oauth = OAuthConfig(
            issuer=provider.issuer,
            client_id=plane.settings.oidc_client_id or "",
            audience=plane.oidc.audience,
            authorize_url=provider.authorization_endpoint,
            token_url=provider.token_endpoint,
            device_authorization_url=provider.device_authorization_endpoint,
            revocation_url=provider.revocation_endpoint,
        )
    return CliConfig(plane_id=plane_id, anonymous=plane.settings.anonymous, oauth=oauth)


@router.post(
    "/auth/anonymous",
    response_model=AnonymousToken,
    response_model_exclude_none=True,
    responses={
        403: {
            "description": "The home key does not match this plane's home, or the plane "
            "mints no anonymous identities (`--no-anonymous`)."
        },
        429: {"description": "Too many sign-ins from this address; see `Retry-After`."},
    },
)
def anonymous(
    request: Request,
    db: StoreDep,
    plane: PlaneDep,
    body: AnonymousTokenRequest | None = None,
) -> AnonymousToken:
    """A new anonymous identity, or with ``homeKey`` the home owner's; the token is stored hashed.

    Rate-limited per client address (a token bucket in memory: ``ARKOR_MINT_BURST`` at
    once, refilled at ``ARKOR_MINT_PER_MINUTE``). A plane started with ``--no-anonymous``
    mints only the home owner's (whoever holds the home key holds the database anyway).
    """
    if not plane.settings.anonymous and (body is None or body.home_key is None):
        raise ApiError(
            403,
            "This plane signs people in through its OpenID provider only; it mints no "
            "anonymous identities (it was started with --no-anonymous). Run "
            "`arkor login --oauth`.",
        )
    limit_per_address(
        request,
        "mint",
        burst=plane.settings.mint_burst,
        per_minute=plane.settings.mint_per_minute,
        refusal="Too many sign-ins",
        hint=", or reuse the identity you have (`arkor whoami`)",
    )
    token = secrets.token_urlsafe(32)
    token_hash = store.hash_token(token)
    if body is not None and body.home_key is not None:
        plane_id = store.plane_identity(db=db)
        found = read_home_key(plane.settings.state_dir / HOME_KEY_FILENAME)
        if (
            found is None
            or found[0] != plane_id
            or not secrets.compare_digest(found[1].encode(), body.home_key.encode())
        ):
            raise ApiError(
                403,
                "The home key does not match this plane's home. Sign in without it to get a "
                "new anonymous identity.",
            )
        presented = _presented_token(request)
        user, org = store.home_owner_identity(
            db=db,
            token_hash=token_hash,
            adopt_token_hash=store.hash_token(presented) if presented else None,
        )
    else:
        user, org = store.create_anonymous_identity(db=db, token_hash=token_hash)
    assert user.anonymous_id is not None
    return AnonymousToken(
        token=token,
        anonymous_id=user.anonymous_id,
        kind=body.kind if body is not None else "cli",
        personal_org=Org(id=org.id, slug=org.slug, name=org.name),
        token_id=user.token_id,
    )


@router.get("/me", response_model=Me, response_model_exclude_none=True)
def me(db: StoreDep, principal: PrincipalDep) -> Me:
    """The caller and their orgs; a person from the provider with their issuer, email, name."""
    user = User(id=principal.user_id, kind=principal.kind, anonymous_id=principal.anonymous_id)
    found = orgs.person(db=db, user_id=principal.user_id)
    if found is not None:
        user = user.model_copy(
            update={
                "issuer": found.issuer,
                "subject": found.subject,
                "email": found.email,
                "name": found.name,
                "plane_owner": orgs.plane_owner(db=db) == principal.user_id,
            }
        )
    return Me(
        user=user,
        orgs=[
            Org(id=org.id, slug=org.slug, name=org.name)
            for org in store.user_orgs(db=db, user_id=principal.user_id)
        ],
    )


@router.get("/auth/tokens", response_model=TokenList)
def list_tokens(db: StoreDep, principal: PrincipalDep) -> TokenList:
    """The caller's tokens (ids and dates), the one presented marked ``current``."""
    return TokenList(
        tokens=[
            TokenInfo(id=row.id, created_at=row.created_at, current=row.id == principal.token_id)
            for row in store.list_tokens(db=db, user_id=principal.user_id)
        ]
    )


@router.delete("/auth/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(db: StoreDep, principal: PrincipalDep, token_id: str) -> Response:
    """Revoke one of the caller's tokens (the one presented too); 404 when it has none such."""
    if not store.revoke_token(db=db, user_id=principal.user_id, token_id=token_id):
        raise not_found(f"Token `{token_id}`")
    return Response(status_code=204)


def _presented_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _ensure_home_key(path: Path, plane_id: str) -> None:
    """Write the home key when there is none for this plane (first start, or a new database)."""
    found = read_home_key(path)
    if found is not None and found[0] == plane_id:
        return
    document = {"planeId": plane_id, "key": secrets.token_urlsafe(32)}
    atomic_write_text(path, json.dumps(document) + "\n", mode=0o600)
