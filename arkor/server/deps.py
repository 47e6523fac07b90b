"""Route dependencies as ``Annotated`` aliases: handlers declare what they need by type.

Scope rule (PROTOCOL.md): anything outside the caller's orgs answers 404, exactly like
something that does not exist, so ids never leak across orgs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from arkor.server import _orgs as orgs
from arkor.server import _store as store
from arkor.server._db import Database
from arkor.server._errors import ApiError, not_found
from arkor.server._oidc import InvalidToken, looks_like_jwt
from arkor.server._plane import Plane
from arkor.server._store import JobRow, OrgRow, Principal, ProjectRow


def _plane(request: Request) -> Plane:
    plane = request.app.state.plane
    assert isinstance(plane, Plane)
    return plane


PlaneDep = Annotated[Plane, Depends(_plane)]


def _store(plane: PlaneDep) -> Database:
    return plane.db


StoreDep = Annotated[Database, Depends(_store)]


def _bearer(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Missing bearer token: send `Authorization: Bearer <token>`.")
    return token.strip()


BearerDep = Annotated[str, Depends(_bearer)]


def _principal(db: StoreDep, plane: PlaneDep, token: BearerDep) -> Principal:
    """The identity behind the token: a person's access token from the plane's OpenID
    provider (a JWT), or one of the plane's own tokens."""
    if plane.oidc is not None and looks_like_jwt(token):
        try:
            identity = plane.oidc.verify(token)
        except InvalidToken as error:
            raise ApiError(error.status, error.message) from None
        return orgs.oidc_principal(db=db, identity=identity)
    principal = store.principal_for_token(db=db, token_hash=store.hash_token(token))
    if principal is None:
        raise ApiError(401, "The token is not valid on this control plane; sign in again.")
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]

OrgSlug = Annotated[str, Query(alias="orgSlug", min_length=1)]
ProjectSlug = Annotated[str, Query(alias="projectSlug", min_length=1)]


def _org(db: StoreDep, principal: PrincipalDep, org_slug: OrgSlug) -> OrgRow:
    org = store.member_org(db=db, user_id=principal.user_id, org_slug=org_slug)
    if org is None:
        raise not_found(f"Org `{org_slug}`")
    return org


OrgDep = Annotated[OrgRow, Depends(_org)]


def _project(
    db: StoreDep, principal: PrincipalDep, org_slug: OrgSlug, project_slug: ProjectSlug
) -> ProjectRow:
    project = store.member_project(
        db=db, user_id=principal.user_id, org_slug=org_slug, project_slug=project_slug
    )
    if project is None:
        raise not_found(f"Project `{org_slug}/{project_slug}`")
    return project


ProjectDep = Annotated[ProjectRow, Depends(_project)]


def _job(db: StoreDep, project: ProjectDep, job_id: str) -> JobRow:
    job = store.get_job(db=db, job_id=job_id, project_id=project.id)
    if job is None:
        raise not_found(f"Job `{job_id}`")
    return job


JobDep = Annotated[JobRow, Depends(_job)]


def _job_token(db: StoreDep, token: BearerDep, job_id: str) -> JobRow:
    job = store.job_for_token(db=db, job_id=job_id, token_hash=store.hash_token(token))
    if job is None:
        raise ApiError(401, f"The token is not a worker token of job `{job_id}`.")
    return job


JobTokenDep = Annotated[JobRow, Depends(_job_token)]
"""The job whose worker token the request carries (internal worker routes only)."""
