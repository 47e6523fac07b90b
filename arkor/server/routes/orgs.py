"""Who belongs to an org: members, invitations by email, removal.

Any member sees the members; an owner of the org, or the plane's owner (the first person
who signed in through the OpenID provider), invites and removes. The plane's owner reaches
every org; anyone else gets 404 for an org they are not in, as for every scoped route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from arkor.cloud import (
    InvitationCreate,
    InvitationEnvelope,
    Org,
    OrgInvitation,
    OrgMember,
    OrgMembers,
)
from arkor.server import _orgs as orgs
from arkor.server import _store as store
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses, not_found
from arkor.server._orgs import InvitationRow
from arkor.server._store import OrgRow
from arkor.server.deps import PlaneDep, PrincipalDep, StoreDep

router = APIRouter(prefix="/v1/orgs", tags=["orgs"], responses=SCOPED_ERRORS)

OrgSlugPath = Annotated[str, Path(min_length=1)]


def _visible_org(db: StoreDep, principal: PrincipalDep, org_slug: OrgSlugPath) -> OrgRow:
    """The org when the caller belongs to it or owns the plane; else 404."""
    org = store.member_org(db=db, user_id=principal.user_id, org_slug=org_slug)
    if org is None and orgs.plane_owner(db=db) == principal.user_id:
        org = orgs.any_org(db=db, org_slug=org_slug)
    if org is None:
        raise not_found(f"Org `{org_slug}`")
    return org


VisibleOrgDep = Annotated[OrgRow, Depends(_visible_org)]


def _managed_org(db: StoreDep, principal: PrincipalDep, org: VisibleOrgDep) -> OrgRow:
    """The org when the caller owns it or the plane; else 403."""
    role = orgs.role_in(db=db, org_id=org.id, user_id=principal.user_id)
    if role != "owner" and orgs.plane_owner(db=db) != principal.user_id:
        raise ApiError(
            403,
            f"Only an owner of org `{org.slug}`, or the plane's owner, can invite or remove "
            "people. Ask one of them (`arkor orgs members` lists the owners).",
        )
    return org


ManagedOrgDep = Annotated[OrgRow, Depends(_managed_org)]


def _invitation(row: InvitationRow) -> OrgInvitation:
    return OrgInvitation(email=row.email, invited_by=row.invited_by, created_at=row.created_at)


@router.get("/{org_slug}/members", response_model=OrgMembers, response_model_exclude_none=True)
def list_members(db: StoreDep, org: VisibleOrgDep) -> OrgMembers:
    """The org's members (owners first) and its invitations not yet taken up."""
    return OrgMembers(
        org=Org(id=org.id, slug=org.slug, name=org.name),
        members=[
            OrgMember(
                user_id=member.user_id,
                kind=member.kind,
                role=member.role,
                source=member.source,
                email=member.email,
                name=member.name,
            )
            for member in orgs.members(db=db, org_id=org.id)
        ],
        invitations=[_invitation(row) for row in orgs.invitations(db=db, org_id=org.id)],
    )


@router.post(
    "/{org_slug}/invitations",
    response_model=InvitationEnvelope,
    status_code=201,
    responses=error_responses(403, 409),
)
def invite(
    db: StoreDep,
    plane: PlaneDep,
    principal: PrincipalDep,
    org: ManagedOrgDep,
    body: InvitationCreate,
) -> InvitationEnvelope:
    """Invite a person by email: their next request with that address, verified, joins them."""
    if plane.oidc is None:
        raise ApiError(
            409,
            "This plane signs no one in through an OpenID provider, so an invitation by email "
            "could never be taken up. Start it with --oidc-issuer and --oidc-client-id.",
        )
    row = orgs.invite(db=db, org=org, email=body.email, invited_by=principal.user_id)
    return InvitationEnvelope(invitation=_invitation(row))


@router.delete(
    "/{org_slug}/invitations/{email}",
    status_code=204,
    response_class=Response,
    responses=error_responses(403),
)
def cancel_invitation(db: StoreDep, org: ManagedOrgDep, email: str) -> Response:
    """Withdraw an invitation not yet taken up."""
    if not orgs.cancel_invitation(db=db, org_id=org.id, email=email):
        raise not_found(f"Invitation of `{email}` to org `{org.slug}`")
    return Response(status_code=204)


@router.delete(
    "/{org_slug}/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(403, 409),
)
def remove_member(db: StoreDep, org: ManagedOrgDep, user_id: str) -> Response:
    """Take a person out of the org: from their next request on, its data answers 404."""
    outcome = orgs.remove_member(db=db, org_id=org.id, user_id=user_id)
    if outcome == "missing":
        raise not_found(f"Member `{user_id}` of org `{org.slug}`")
    if outcome == "owner":
        raise ApiError(409, f"`{user_id}` owns org `{org.slug}`; an owner can't be removed.")
    if outcome == "group":
        group = orgs.group_of(db=db, org_id=org.id)
        raise ApiError(
            409,
            f"`{user_id}` belongs to org `{org.slug}` through the provider's group `{group}`. "
            "Remove them from that group at the OpenID provider; their next request then "
            "leaves the org.",
        )
    return Response(status_code=204)
