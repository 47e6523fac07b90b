"""People from an OpenID provider, and who belongs to which org.

A person is keyed by ``(issuer, subject)``; their email and name follow their latest token.
Each gets a personal org on first sight, as an anonymous identity does, and the first
person of a plane owns the plane (``meta.oidc_owner_user_id``): they may manage every org.
Someone else joins an org in one of two ways:

- an invitation by email from an owner of the org (or the plane's owner), taken up on that
  person's next request whose token carries the same address, verified;
- the groups claim (``--oidc-groups-claim``): each group a token lists is an org of that
  name, created on first sight; membership follows the claim on every request, so removing
  someone from the group at the provider removes them here.

Every request of a signed-in person syncs this with reads only, unless something changed.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

from arkor.cloud import utc_now
from arkor.server._db import Database
from arkor.server._oidc import Identity
from arkor.server._store import OrgRow, Principal, new_id

_OWNER_KEY = "oidc_owner_user_id"


@dataclass(frozen=True)
class MemberRow:
    user_id: str
    kind: str
    role: str
    source: Literal["direct", "group"]
    email: str | None
    name: str | None
    issuer: str | None


@dataclass(frozen=True)
class InvitationRow:
    org_id: str
    email: str
    invited_by: str
    created_at: str


@dataclass(frozen=True)
class PersonRow:
    """What the plane knows of a person signed in through the provider."""

    issuer: str
    subject: str
    email: str | None
    name: str | None


def slugify(text: str, *, limit: int = 40) -> str:
    """Lowercase ``[a-z0-9-]``, dashes collapsed and trimmed, at most ``limit`` characters."""
    return (
        re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:limit].strip("-")
    )


def oidc_principal(*, db: Database, identity: Identity) -> Principal:
    """The principal of a verified token: the person created or updated, invitations taken
    up, and group memberships brought in line with the token's groups claim."""
    connection = db.connection()
    row = connection.execute(
        "SELECT user_id, email, email_verified, name FROM oidc_users "
        "WHERE issuer = ? AND subject = ?",
        (identity.issuer, identity.subject),
    ).fetchone()
    if (
        row is not None
        and (row["email"], bool(row["email_verified"]), row["name"])
        == (identity.email, identity.email_verified, identity.name)
        and not _pending_invitations(connection, identity)
        and _groups_in_line(connection, row["user_id"], _wanted_groups(identity))
    ):
        return Principal(row["user_id"], "oidc", None)
    with db.transaction() as connection:
        user_id = _sync(connection, identity)
    return Principal(user_id, "oidc", None)


def _wanted_groups(identity: Identity) -> set[str]:
    """The groups of the claim that can be orgs (a name with nothing to slug is skipped)."""
    return {group for group in identity.groups if slugify(group)}


def _pending_invitations(connection: sqlite3.Connection, identity: Identity) -> bool:
    if identity.email is None or not identity.email_verified:
        return False
    found = connection.execute(
        "SELECT 1 FROM invitations WHERE email = ? LIMIT 1", (identity.email,)
    ).fetchone()
    return found is not None


def _group_orgs_of(connection: sqlite3.Connection, user_id: str) -> dict[str, bool]:
    """Each group org the user belongs to, and whether through the group (not directly)."""
    rows = connection.execute(
        "SELECT g.group_name, gm.user_id IS NOT NULL AS by_group FROM memberships m "
        "JOIN group_orgs g ON g.org_id = m.org_id LEFT JOIN group_members gm "
        "ON gm.org_id = m.org_id AND gm.user_id = m.user_id WHERE m.user_id = ?",
        (user_id,),
    )
    return {row["group_name"]: bool(row["by_group"]) for row in rows}


def _groups_in_line(connection: sqlite3.Connection, user_id: str, wanted: set[str]) -> bool:
    have = _group_orgs_of(connection, user_id)
    through_group = {group for group, by_group in have.items() if by_group}
    return wanted <= have.keys() and through_group <= wanted


def _sync(connection: sqlite3.Connection, identity: Identity) -> str:
    """Create or update the person, take up invitations, follow the groups claim."""
    row = connection.execute(
        "SELECT user_id FROM oidc_users WHERE issuer = ? AND subject = ?",
        (identity.issuer, identity.subject),
    ).fetchone()
    if row is None:
        user_id = _new_person(connection, identity)
    else:
        user_id = row["user_id"]
        connection.execute(
            "UPDATE oidc_users SET email = ?, email_verified = ?, name = ? WHERE user_id = ?",
            (identity.email, identity.email_verified, identity.name, user_id),
        )
    if identity.email is not None and identity.email_verified:
        invited = connection.execute(
            "SELECT org_id FROM invitations WHERE email = ?", (identity.email,)
        ).fetchall()
        for invitation in invited:
            connection.execute(
                "INSERT OR IGNORE INTO memberships (org_id, user_id, role) VALUES (?, ?, 'member')",
                (invitation["org_id"], user_id),
            )
            # an invitation makes the membership direct, whatever the groups claim says later
            connection.execute(
                "DELETE FROM group_members WHERE org_id = ? AND user_id = ?",
                (invitation["org_id"], user_id),
            )
        connection.execute("DELETE FROM invitations WHERE email = ?", (identity.email,))
    _follow_groups(connection, user_id, _wanted_groups(identity))
    return user_id


def _new_person(connection: sqlite3.Connection, identity: Identity) -> str:
    """A user, their (issuer, subject), their personal org; the first one owns the plane."""
    now = utc_now()
    user_id = new_id("user")
    connection.execute(
        "INSERT INTO users (id, kind, anonymous_id, created_at) VALUES (?, 'oidc', NULL, ?)",
        (user_id, now),
    )
    connection.execute(
        "INSERT INTO oidc_users (user_id, issuer, subject, email, email_verified, name) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            identity.issuer,
            identity.subject,
            identity.email,
            identity.email_verified,
            identity.name,
        ),
    )
    org_id = new_id("org")
    handle = identity.email.partition("@")[0] if identity.email else identity.subject
    slug = f"{slugify(handle, limit=30) or 'user'}-{org_id.removeprefix('org_')[:6]}"
    connection.execute(
        "INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
        (org_id, slug, f"{identity.name or handle} (personal)", now),
    )
    connection.execute(
        "INSERT INTO memberships (org_id, user_id, role) VALUES (?, ?, 'owner')",
        (org_id, user_id),
    )
    connection.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (_OWNER_KEY, user_id)
    )
    return user_id


def _follow_groups(connection: sqlite3.Connection, user_id: str, wanted: set[str]) -> None:
    """Group memberships exactly as the claim lists them; a direct membership stays."""
    have = _group_orgs_of(connection, user_id)
    for group, by_group in have.items():
        if by_group and group not in wanted:
            connection.execute(
                "DELETE FROM memberships WHERE user_id = ? AND org_id = "
                "(SELECT org_id FROM group_orgs WHERE group_name = ?)",
                (user_id, group),
            )
    for group in sorted(wanted - have.keys()):
        org_id = _group_org(connection, group)
        connection.execute(
            "INSERT INTO memberships (org_id, user_id, role) VALUES (?, ?, 'member')",
            (org_id, user_id),
        )
        connection.execute(
            "INSERT INTO group_members (org_id, user_id) VALUES (?, ?)", (org_id, user_id)
        )


def _group_org(connection: sqlite3.Connection, group: str) -> str:
    """The org mirroring ``group``, created on first sight."""
    row = connection.execute(
        "SELECT org_id FROM group_orgs WHERE group_name = ?", (group,)
    ).fetchone()
    if row is not None:
        org_id: str = row["org_id"]
        return org_id
    base = slugify(group)
    org_id = new_id("org")
    slug = base
    if connection.execute("SELECT 1 FROM orgs WHERE slug = ?", (slug,)).fetchone():
        slug = f"{base[:33]}-{org_id.removeprefix('org_')[:6]}"
    connection.execute(
        "INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
        (org_id, slug, group, utc_now()),
    )
    connection.execute("INSERT INTO group_orgs (org_id, group_name) VALUES (?, ?)", (org_id, group))
    return org_id


def any_org(*, db: Database, org_slug: str) -> OrgRow | None:
    """The org named ``org_slug``, whoever belongs to it (for the plane's owner only)."""
    row = (
        db.connection()
        .execute("SELECT id, slug, name FROM orgs WHERE slug = ?", (org_slug,))
        .fetchone()
    )
    return OrgRow(row["id"], row["slug"], row["name"]) if row else None


def plane_owner(*, db: Database) -> str | None:
    """The first person who signed in through the provider: the plane's owner."""
    row = db.connection().execute("SELECT value FROM meta WHERE key = ?", (_OWNER_KEY,)).fetchone()
    return str(row["value"]) if row else None


def person(*, db: Database, user_id: str) -> PersonRow | None:
    row = (
        db.connection()
        .execute(
            "SELECT issuer, subject, email, name FROM oidc_users WHERE user_id = ?", (user_id,)
        )
        .fetchone()
    )
    return PersonRow(row["issuer"], row["subject"], row["email"], row["name"]) if row else None


def role_in(*, db: Database, org_id: str, user_id: str) -> str | None:
    row = (
        db.connection()
        .execute("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?", (org_id, user_id))
        .fetchone()
    )
    return str(row["role"]) if row else None


def group_of(*, db: Database, org_id: str) -> str | None:
    """The provider group an org mirrors, if it is such an org."""
    row = (
        db.connection()
        .execute("SELECT group_name FROM group_orgs WHERE org_id = ?", (org_id,))
        .fetchone()
    )
    return str(row["group_name"]) if row else None


def members(*, db: Database, org_id: str) -> list[MemberRow]:
    """The org's members, owners first, then by email (or id)."""
    rows = db.connection().execute(
        "SELECT m.user_id, u.kind, m.role, o.email, o.name, o.issuer, "
        "g.user_id IS NOT NULL AS by_group FROM memberships m JOIN users u ON u.id = m.user_id "
        "LEFT JOIN oidc_users o ON o.user_id = m.user_id "
        "LEFT JOIN group_members g ON g.org_id = m.org_id AND g.user_id = m.user_id "
        "WHERE m.org_id = ? ORDER BY m.role != 'owner', coalesce(o.email, m.user_id)",
        (org_id,),
    )
    return [
        MemberRow(
            row["user_id"],
            row["kind"],
            row["role"],
            "group" if row["by_group"] else "direct",
            row["email"],
            row["name"],
            row["issuer"],
        )
        for row in rows
    ]


def invitations(*, db: Database, org_id: str) -> list[InvitationRow]:
    rows = db.connection().execute(
        "SELECT org_id, email, invited_by, created_at FROM invitations WHERE org_id = ? "
        "ORDER BY created_at, email",
        (org_id,),
    )
    return [
        InvitationRow(row["org_id"], row["email"], row["invited_by"], row["created_at"])
        for row in rows
    ]


def invite(*, db: Database, org: OrgRow, email: str, invited_by: str) -> InvitationRow:
    """Invite ``email`` (lowercased) to ``org``; inviting again keeps the first invitation."""
    with db.transaction() as connection:
        connection.execute(
            "INSERT OR IGNORE INTO invitations (org_id, email, invited_by, created_at) "
            "VALUES (?, ?, ?, ?)",
            (org.id, email.lower(), invited_by, utc_now()),
        )
        row = connection.execute(
            "SELECT org_id, email, invited_by, created_at FROM invitations "
            "WHERE org_id = ? AND email = ?",
            (org.id, email.lower()),
        ).fetchone()
    return InvitationRow(row["org_id"], row["email"], row["invited_by"], row["created_at"])


def cancel_invitation(*, db: Database, org_id: str, email: str) -> bool:
    with db.transaction() as connection:
        deleted = connection.execute(
            "DELETE FROM invitations WHERE org_id = ? AND email = ?", (org_id, email.lower())
        ).rowcount
    return deleted > 0


Removal = Literal["removed", "missing", "owner", "group"]


def remove_member(*, db: Database, org_id: str, user_id: str) -> Removal:
    """Take ``user_id`` out of the org; owners and group members stay (the answer says why)."""
    with db.transaction() as connection:
        row = connection.execute(
            "SELECT m.role, g.user_id IS NOT NULL AS by_group FROM memberships m "
            "LEFT JOIN group_members g ON g.org_id = m.org_id AND g.user_id = m.user_id "
            "WHERE m.org_id = ? AND m.user_id = ?",
            (org_id, user_id),
        ).fetchone()
        if row is None:
            return "missing"
        if row["role"] == "owner":
            return "owner"
        if row["by_group"]:
            return "group"
        connection.execute(
            "DELETE FROM memberships WHERE org_id = ? AND user_id = ?", (org_id, user_id)
        )
    return "removed"
