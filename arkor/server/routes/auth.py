"""Sign-in bootstrap and identity: anonymous CLI tokens, each with a personal org."""

from __future__ import annotations

import secrets

from fastapi import APIRouter

from arkor.cloud import AnonymousToken, AnonymousTokenRequest, CliConfig, Me, Org, User
from arkor.server import _store as store
from arkor.server.deps import PrincipalDep, StoreDep

router = APIRouter(prefix="/v1", tags=["auth"])


@router.get("/auth/cli/config", response_model=CliConfig)
def cli_config() -> CliConfig:
    """This plane signs in anonymously only; there is no OAuth issuer."""
    return CliConfig(anonymous=True, oauth=None)


@router.post("/auth/anonymous", response_model=AnonymousToken, response_model_exclude_none=True)
def anonymous(db: StoreDep, body: AnonymousTokenRequest | None = None) -> AnonymousToken:
    """A new anonymous identity; the token is shown only here and stored hashed."""
    token = secrets.token_urlsafe(32)
    user, org = store.create_anonymous_identity(db=db, token_hash=store.hash_token(token))
    assert user.anonymous_id is not None
    return AnonymousToken(
        token=token,
        anonymous_id=user.anonymous_id,
        kind=body.kind if body is not None else "cli",
        personal_org=Org(id=org.id, slug=org.slug, name=org.name),
    )


@router.get("/me", response_model=Me, response_model_exclude_none=True)
def me(db: StoreDep, principal: PrincipalDep) -> Me:
    orgs = store.user_orgs(db=db, user_id=principal.user_id)
    return Me(
        user=User(id=principal.user_id, kind=principal.kind, anonymous_id=principal.anonymous_id),
        orgs=[Org(id=org.id, slug=org.slug, name=org.name) for org in orgs],
    )
