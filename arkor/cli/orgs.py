"""``arkor orgs``: who shares an org on a team plane: invite by email, list, remove.

Thin over the plane's ``/v1/orgs/{slug}`` routes: an invitation is taken up when the person
next signs in with that email (verified by the plane's OpenID provider); removal takes
effect on their next request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import CloudApiClient

app = typer.Typer(
    help="Invite people to an org on a team plane, list its members, remove them.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org",
        help=(
            "The org's slug (`arkor whoami` lists yours). Default: this folder's project's org, "
            "else your only org."
        ),
        show_default=False,
    ),
]


def _org(client: CloudApiClient, org: str | None) -> str:
    """``org``, else the folder's project's org, else the caller's only org."""
    from arkor.cloud import read_state
    from arkor.errors import UsageError

    if org:
        return org
    state = read_state(Path.cwd())
    if state is not None:
        return state.org_slug
    orgs = client.me().orgs
    if len(orgs) == 1:
        return orgs[0].slug
    names = ", ".join(found.slug for found in orgs) or "none"
    raise UsageError(f"You belong to several orgs ({names}); pick one with --org SLUG.")


@app.command("invite")
def invite(
    email: Annotated[str, typer.Argument(help="The person's email, as their provider has it.")],
    org: OrgOption = None,
) -> int:
    """Invite a person by email; they join when they next sign in with that address, verified.

    Only an owner of the org (or the plane's owner) can invite.

    Examples:

      arkor orgs invite bob@example.com

      arkor orgs invite bob@example.com --org ml-team
    """
    from arkor.cli._output import echo, style
    from arkor.cli.login import _signed_in_client
    from arkor.errors import UsageError

    if "@" not in email.strip("@") or any(c.isspace() for c in email):
        raise UsageError(f"`{email}` is not an email address; give one like bob@example.com.")
    with _signed_in_client() as (url, client):
        slug = _org(client, org)
        invitation = client.invite(slug, email)
    echo(
        f"{style('✓', 'green')} Invited {invitation.email} to {slug} on {url}; they join when "
        "they next sign in there (`arkor login --oauth`)."
    )
    return 0


@app.command("members")
def members(org: OrgOption = None, json_output: JsonOption = False) -> int:
    """The org's members (owners first) and the invitations not yet taken up.

    Examples:

      arkor orgs members

      arkor orgs members --org ml-team --json
    """
    from arkor.cli._output import echo, print_json
    from arkor.cli.login import _signed_in_client

    with _signed_in_client() as (_, client):
        listed = client.org_members(_org(client, org))
    if json_output:
        print_json(listed.to_wire())
        return 0
    echo(f"{listed.org.slug}  {listed.org.name}")
    for member in listed.members:
        who = member.email or member.user_id
        name = f"  {member.name}" if member.name else ""
        via = "  (through the provider's group)" if member.source == "group" else ""
        echo(f"  {member.role:<7} {who}{name}  {member.user_id}{via}")
    for invitation in listed.invitations:
        echo(f"  invited {invitation.email}  since {invitation.created_at[:19]}")
    return 0


@app.command("remove")
def remove(
    user: Annotated[
        str,
        typer.Argument(
            help="The member's user id or email (from `arkor orgs members`); an email with a "
            "pending invitation withdraws it."
        ),
    ],
    org: OrgOption = None,
) -> int:
    """Take a person out of the org (or withdraw their invitation); from their next request on,
    the org's projects and jobs answer 404 to them.

    Examples:

      arkor orgs remove bob@example.com

      arkor orgs remove user_3f2a… --org ml-team
    """
    from arkor.cli._output import echo, style
    from arkor.cli.login import _signed_in_client
    from arkor.errors import UsageError

    with _signed_in_client() as (url, client):
        slug = _org(client, org)
        listed = client.org_members(slug)
        wanted = user.strip().lower()
        member = next(
            (m for m in listed.members if user == m.user_id or (m.email or "") == wanted),
            None,
        )
        if member is not None:
            client.remove_member(slug, member.user_id)
            echo(f"{style('✓', 'green')} Removed {member.email or member.user_id} from {slug}.")
            return 0
        if any(invitation.email == wanted for invitation in listed.invitations):
            client.cancel_invitation(slug, wanted)
            echo(f"{style('✓', 'green')} Withdrew the invitation of {wanted} to {slug}.")
            return 0
    raise UsageError(
        f"`{user}` is neither a member of {slug} on {url} nor invited there. "
        "`arkor orgs members` lists both."
    )
