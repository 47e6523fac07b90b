"""``arkor login``, ``logout``, ``whoami`` and ``tokens``: who the CLI is on a plane.

They use the plane every command in this folder uses (``[cloud] url``,
``ARKOR_CLOUD_API_URL``, the remote plane signed in to last, else this home's local
plane). On this home's own plane the sign-in is always the identity that owns the home,
so logging out and in again keeps every project. Elsewhere an anonymous identity cannot
sign in again once its token is gone, so dropping one that reaches projects asks first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import CliConfig, CloudApiClient, Credentials, OAuthCredentials

YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Drop an identity that reaches projects without asking (needed without a terminal or in CI).",
    ),
]


def login(
    anonymous: Annotated[
        bool, typer.Option("--anonymous", help="Mint an anonymous identity; never prompt.")
    ] = False,
    oauth: Annotated[
        bool,
        typer.Option("--oauth", help="Sign in through the plane's OpenID provider (in a browser)."),
    ] = False,
    device: Annotated[
        bool,
        typer.Option(
            "--device",
            help="Sign in through the provider with a code entered in a browser anywhere.",
        ),
    ] = False,
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="Print the sign-in URL instead of opening a browser."),
    ] = False,
    yes: YesOption = False,
) -> int:
    """Sign in to this folder's plane (the one `arkor start` uses).

    Without a flag, a terminal outside CI offers the plane's methods (default: anonymous);
    elsewhere the anonymous sign-in is used, or the provider's on a plane without it. With
    --oauth the plane's OpenID provider signs you in in your browser (--no-browser prints
    the URL to open instead); on a machine without a display, and with --device, you get a
    code to confirm in a browser anywhere, when the provider offers that. On this home's local
    plane you always get the identity that owns the home back. On another plane signing
    in again replaces your identity there (other planes' are kept); if the old one
    reaches projects, you are asked first.

    Examples:

      arkor login

      ARKOR_CLOUD_API_URL=http://gpu-box:8765 arkor login --oauth

      arkor login --device
    """
    import click

    from arkor.cli._output import echo, interactive, style
    from arkor.cloud import (
        AnonymousCredentials,
        CloudApiClient,
        find_credentials,
        is_home_plane,
        sign_in,
        write_credentials,
    )
    from arkor.errors import ArkorError, UsageError
    from arkor.sdk import connect

    if anonymous and (oauth or device):
        raise UsageError(
            f"Choose one of --anonymous and {'--device' if device else '--oauth'}, not both."
        )
    if anonymous and no_browser:
        raise UsageError("--no-browser goes with --oauth; an anonymous sign-in needs no browser.")
    target = connect(cwd=Path.cwd())
    try:
        url = target.identity
        with CloudApiClient(target.url) as client:
            config = client.cli_config()
        method = "oauth" if oauth or device or no_browser else "anonymous" if anonymous else None
        if method is None:
            if config.anonymous and config.oauth is not None and interactive():
                method = typer.prompt(
                    "Sign in with", default="anonymous", type=click.Choice(["anonymous", "oauth"])
                )
            else:
                method = "anonymous" if config.anonymous or config.oauth is None else "oauth"
        if method == "oauth" and config.oauth is None:
            raise ArkorError(
                f"The plane at {url} offers no OAuth sign-in. Use `arkor login --anonymous`."
            )
        if method == "anonymous" and not config.anonymous:
            raise ArkorError(
                f"The plane at {url} does not allow anonymous sign-in. Use `arkor login --oauth`."
            )
        home = is_home_plane(config.plane_id)
        current = find_credentials(url, config.plane_id, via=target.via)
        if current is not None and not home:
            _confirm_dropping(target.url, current, yes=yes, action="Signing in again")
        credentials: Credentials
        who = ""
        if config.oauth is not None and method == "oauth":
            credentials, who = _oauth_sign_in(
                target.url, url, config, device=device, no_browser=no_browser
            )
        else:
            credentials = sign_in(url, config.plane_id, via=target.via, current=current)
    finally:
        target.close()
    path = write_credentials(credentials)
    if isinstance(credentials, AnonymousCredentials):
        echo(
            f"{style('✓', 'green')} Signed in anonymously to {url} as {credentials.anonymous_id} "
            f"(org {credentials.org_slug})."
        )
        if home:
            echo(
                "  This home's own plane: `arkor login` here always signs you in as this identity."
            )
    else:
        echo(f"{style('✓', 'green')} Signed in to {url} as {who} through {credentials.issuer}.")
    echo(f"  credentials  {path}")
    return 0


def _oauth_sign_in(
    address: str, url: str, config: CliConfig, *, device: bool, no_browser: bool
) -> tuple[OAuthCredentials, str]:
    """Sign in through the plane's provider; the record and who the plane says you are.

    The browser flow where there is a browser, or printing its URL with ``--no-browser``;
    the device flow with ``--device``, or on a machine without a display when the provider
    offers it (else the URL is printed). The plane must accept the new token before it is
    stored.
    """
    import webbrowser

    from arkor.cli._output import echo
    from arkor.cloud import (
        AuthError,
        CloudApiClient,
        browser_available,
        oauth_credentials,
        sign_in_with_browser,
        sign_in_with_device,
    )
    from arkor.errors import ArkorError

    oauth = config.oauth
    assert oauth is not None
    browser = not no_browser and browser_available()
    automatic = not no_browser and not browser
    if device or (automatic and oauth.device_authorization_url is not None):
        token = sign_in_with_device(oauth, say=echo)
    else:
        token = sign_in_with_browser(
            oauth, say=echo, open_browser=webbrowser.open if browser else None
        )
    credentials = oauth_credentials(token, oauth, url=url, plane_id=config.plane_id)
    try:
        with CloudApiClient(address, credentials.access_token) as client:
            user = client.me().user
    except AuthError as error:
        raise ArkorError(
            f"{oauth.issuer} signed you in, but the plane at {url} refuses its token "
            f"({error.message}). The plane's operator should check that it is started with "
            f"--oidc-issuer {oauth.issuer} and the audience its tokens carry ({oauth.audience}); "
            "nothing was stored."
        ) from None
    return credentials, _person(user.name, user.email, user.id)


def _person(name: str | None, email: str | None, fallback: str) -> str:
    """``Name <email>``, or whichever of them the provider gave, else ``fallback``."""
    if name and email:
        return f"{name} <{email}>"
    return name or email or fallback


def logout(yes: YesOption = False) -> int:
    """Forget your identity on this folder's plane (other planes' are kept).

    On this home's local plane only the token is forgotten: `arkor login` signs you in
    again as the same identity, with every project. On another plane an anonymous
    identity cannot sign in again, so when it reaches projects you are asked first;
    without a terminal (or with CI set) that needs --yes, else it exits 2. There the token
    is also revoked, when the plane can be reached. A sign-in through an OpenID provider
    has its refresh token revoked at the provider, where it offers that; you are told
    when that fails, and the identity is forgotten either way.

    Examples:

      arkor logout

      ARKOR_CLOUD_API_URL=http://gpu-box:8765 arkor logout --yes
    """
    from arkor.cli._output import echo, style
    from arkor.cloud import (
        AnonymousCredentials,
        CloudApiClient,
        CloudApiError,
        OAuthCredentials,
        credentials_path,
        find_credentials,
        forget_credentials,
        home_plane_id,
        is_home_plane,
        plane_key,
        read_credentials,
        revoke_oauth,
    )
    from arkor.sdk import LOCAL_PLANE_URL, connect, resolve_plane

    path = credentials_path()
    url = resolve_plane(cwd=Path.cwd())
    record: Credentials | None
    config: CliConfig | None = None
    if url is None:
        url = LOCAL_PLANE_URL
        home_id = home_plane_id()
        record = read_credentials(plane_id=home_id) if home_id is not None else None
        if record is None and read_credentials(plane_id=LOCAL_PLANE_URL) is not None:
            # signed in before planes had ids: pin that identity as the home's owner first
            target = connect(cwd=Path.cwd())
            try:
                with CloudApiClient(target.url) as client:
                    config = client.cli_config()
                record = find_credentials(LOCAL_PLANE_URL, config.plane_id, via=target.via)
            finally:
                target.close()
    else:
        try:
            with CloudApiClient(url) as client:
                config = client.cli_config()
        except CloudApiError:
            config = None
        plane_id = config.plane_id if config is not None else None
        record = read_credentials(plane_id=plane_id) if plane_id else read_credentials(url)
    if record is None:
        echo(f"Not signed in to {url}: nothing to forget in {path}.")
        return 0
    if isinstance(record, OAuthCredentials):
        if config is None and url == LOCAL_PLANE_URL:
            target = connect(cwd=Path.cwd())
            try:
                with CloudApiClient(target.url) as client:
                    config = client.cli_config()
            finally:
                target.close()
        if config is None or config.oauth is None:
            problem: str | None = f"the plane at {url} did not name its provider's endpoints"
        else:
            problem = revoke_oauth(record, config.oauth)
        forget_credentials(plane_key(record))
        signed_out = (
            f"{style('✓', 'green')} Signed out of {url}: its identity is removed from {path}"
        )
        if problem is None:
            echo(f"{signed_out} and its refresh token revoked at {record.issuer}.")
        else:
            echo(f"{signed_out}.")
            echo(
                f"  Its refresh token could not be revoked ({problem}); it stays valid at "
                f"{record.issuer} until it expires. Sign out there to end it now."
            )
        return 0
    if is_home_plane(record.plane_id):
        forget_credentials(plane_key(record))
        echo(
            f"{style('✓', 'green')} Signed out of this home's local plane ({url}). Its projects "
            "stay yours: `arkor login` signs you in again as the same identity."
        )
        return 0
    assert isinstance(record, AnonymousCredentials)
    if not _confirm_dropping(url, record, yes=yes, action="Signing out"):
        echo(f"Still signed in to {url}.")
        return 1
    revoked = _revoke_own_token(url, record)
    forget_credentials(plane_key(record))
    echo(
        f"{style('✓', 'green')} Signed out of {url}: its identity is removed from {path}"
        + (" and its token revoked on the plane." if revoked else ".")
    )
    return 0


def _revoke_own_token(url: str, credentials: Credentials) -> bool:
    """Revoke the token being forgotten, so a copy of it is no use either (best effort)."""
    from arkor.cloud import CloudApiClient, CloudApiError

    try:
        with CloudApiClient(url, credentials.bearer_token) as client:
            current = next((t.id for t in client.list_tokens().tokens if t.current), None)
            if current is None:
                return False
            client.revoke_token(current)
    except CloudApiError:
        return False
    return True


def _confirm_dropping(url: str, credentials: Credentials, *, yes: bool, action: str) -> bool:
    """Whether to go on dropping an identity that cannot sign in again.

    Goes on at once when it reaches no project or with ``--yes``; asks on a terminal;
    without one (or in CI) refuses with a usage error that names ``--yes``.
    """
    import typer

    from arkor.cli._output import interactive
    from arkor.cloud import AnonymousCredentials, CloudApiClient, CloudApiError
    from arkor.errors import UsageError

    if yes or not isinstance(credentials, AnonymousCredentials):
        return True
    try:
        with CloudApiClient(url, credentials.bearer_token) as client:
            projects = [
                f"{org.slug}/{project.slug}"
                for org in client.me().orgs
                for project in client.list_projects(org.slug).projects
            ]
    except CloudApiError as error:
        problem = (
            f"Cannot check which projects your anonymous identity on {url} reaches ({error}); "
            "it may own some."
        )
    else:
        if not projects:
            return True
        shown = ", ".join(projects[:5]) + (
            f" and {len(projects) - 5} more" if len(projects) > 5 else ""
        )
        problem = f"Your anonymous identity on {url} reaches {len(projects)} project(s): {shown}."
    problem += (
        f" {action} drops its token, and an anonymous identity cannot sign in again, so "
        "nobody could reach those projects any more."
    )
    if not interactive():
        raise UsageError(
            f"{problem} Nothing was changed: pass --yes to go ahead anyway (there is no prompt "
            "without a terminal or when CI is set)."
        )
    return bool(typer.confirm(f"{problem} Go ahead?", default=False))


def whoami(json_output: JsonOption = False) -> int:
    """Print the current identity on this folder's plane and the orgs it can reach.

    A failed lookup is printed on stdout and still exits 0, so scripts should read the
    output; only a plane that requires a newer arkor (HTTP 426) exits 1.

    Examples:

      arkor whoami

      arkor whoami --json
    """
    from arkor.cli._output import echo, print_json
    from arkor.cloud import (
        AnonymousCredentials,
        CloudApiClient,
        CloudApiError,
        UpgradeRequiredError,
        authorized_client,
        find_credentials,
    )
    from arkor.sdk import connect

    target = connect(cwd=Path.cwd())
    url = target.identity
    try:
        try:
            with CloudApiClient(target.url) as client:
                plane_id = client.cli_config().plane_id
            credentials = find_credentials(url, plane_id, via=target.via)
            if credentials is None:
                if json_output:
                    print_json({"url": url, "signedIn": False})
                else:
                    echo(f"Not signed in to {url}. Run `arkor login`.")
                return 0
            with authorized_client(credentials, via=target.url) as client:
                me = client.me()
        except CloudApiError as error:
            if json_output:
                print_json({"url": url, "error": str(error), "status": error.status})
            else:
                status = f" ({error.status})" if error.status is not None else ""
                echo(f"Failed to fetch /v1/me{status}: {error}")
            return 1 if isinstance(error, UpgradeRequiredError) else 0
    finally:
        target.close()
    if json_output:
        print_json(
            {
                "url": url,
                "planeId": plane_id,
                "signedIn": True,
                "mode": credentials.mode,
                "user": me.user.to_wire(),
                "orgs": [org.to_wire() for org in me.orgs],
            }
        )
        return 0
    if isinstance(credentials, AnonymousCredentials):
        identity = f"anonymous ({credentials.anonymous_id})"
    elif me.user.issuer is not None:
        identity = _person(me.user.name, me.user.email, me.user.subject or me.user.id)
    else:
        identity = f"{me.user.kind} user {me.user.id}"
    echo(f"Plane     {url}")
    echo(f"Identity  {identity}")
    if me.user.issuer is not None:
        echo(f"Issuer    {me.user.issuer}")
    echo("Orgs" if me.orgs else "Orgs      none")
    width = max((len(org.slug) for org in me.orgs), default=0)
    for org in me.orgs:
        echo(f"  {org.slug:<{width}}  {org.name}")
    return 0


tokens_app = typer.Typer(
    help="List and revoke your tokens on this folder's plane.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@tokens_app.command("list")
def list_tokens(json_output: JsonOption = False) -> int:
    """Your identity's tokens on this folder's plane (ids and dates; `*` marks this CLI's).

    Examples:

      arkor tokens list
    """
    from arkor.cli._output import echo, print_json

    with _signed_in_client() as (_, client):
        tokens = client.list_tokens().tokens
    if json_output:
        print_json({"tokens": [token.to_wire() for token in tokens]})
        return 0
    for token in tokens:
        echo(f"{'*' if token.current else ' '} {token.id:<28}{token.created_at[:19]}")
    return 0


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `arkor tokens list`).")],
) -> int:
    """Revoke one of your other tokens (to drop this CLI's own, use `arkor logout`).

    Examples:

      arkor tokens revoke tok_3f2a…
    """
    from arkor.cli._output import echo, style
    from arkor.errors import UsageError

    with _signed_in_client() as (url, client):
        current = next((t.id for t in client.list_tokens().tokens if t.current), None)
        if token_id == current:
            raise UsageError(
                f"{token_id} is the token this CLI signs in to {url} with. Use `arkor logout` "
                "to drop it (it checks first that no project would be stranded)."
            )
        client.revoke_token(token_id)
    echo(f"{style('✓', 'green')} Revoked {token_id} on {url}.")
    return 0


@contextmanager
def _signed_in_client() -> Iterator[tuple[str, CloudApiClient]]:
    """A client of this folder's plane carrying your token there; not signed in is an error."""
    from arkor.cloud import CloudApiClient, authorized_client, find_credentials
    from arkor.errors import ArkorError
    from arkor.sdk import connect

    target = connect(cwd=Path.cwd())
    try:
        with CloudApiClient(target.url) as anonymous:
            plane_id = anonymous.cli_config().plane_id
        credentials = find_credentials(target.identity, plane_id, via=target.via)
        if credentials is None:
            raise ArkorError(f"Not signed in to {target.identity}. Run `arkor login` first.")
        with authorized_client(credentials, via=target.url) as client:
            yield target.identity, client
    finally:
        target.close()
