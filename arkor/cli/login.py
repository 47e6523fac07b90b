"""``arkor login``, ``arkor logout`` and ``arkor whoami``: who the CLI is on a plane."""

from __future__ import annotations

from typing import Annotated

import typer

from arkor.cli._options import JsonOption


def login(
    anonymous: Annotated[
        bool, typer.Option("--anonymous", help="Mint an anonymous identity; never prompt.")
    ] = False,
    oauth: Annotated[
        bool, typer.Option("--oauth", help="Sign in with the plane's OAuth provider.")
    ] = False,
) -> int:
    """Sign in to the plane (ARKOR_CLOUD_API_URL, else the last one, else the local plane).

    Without a flag, a terminal outside CI offers the plane's methods (default: anonymous);
    elsewhere the anonymous sign-in is used. Signing in again replaces this plane's
    identity; other planes' are kept.

    Examples:

      arkor login

      ARKOR_CLOUD_API_URL=http://gpu-box:8765 arkor login --anonymous
    """
    import click

    from arkor.cli._output import echo, interactive, style
    from arkor.cloud import (
        CloudApiClient,
        default_arkor_cloud_api_url,
        read_credentials,
        request_anonymous_token,
        write_credentials,
    )
    from arkor.errors import ArkorError, UsageError

    if anonymous and oauth:
        raise UsageError("Choose one of --anonymous and --oauth, not both.")
    url = default_arkor_cloud_api_url(read_credentials())
    with CloudApiClient(url) as client:
        config = client.cli_config()
    method = "oauth" if oauth else "anonymous" if anonymous else None
    if method is None:
        if config.anonymous and config.oauth is not None and interactive():
            method = typer.prompt(
                "Sign in with", default="anonymous", type=click.Choice(["anonymous", "oauth"])
            )
        else:
            method = "anonymous" if config.anonymous or config.oauth is None else "oauth"
    if method == "oauth":
        if config.oauth is None:
            raise ArkorError(
                f"The plane at {url} offers no OAuth sign-in. Use `arkor login --anonymous`."
            )
        raise ArkorError(
            f"The plane at {url} offers OAuth ({config.oauth.issuer}), but this arkor cannot "
            "run the OAuth flow yet. Use `arkor login --anonymous`."
        )
    if not config.anonymous:
        raise ArkorError(
            f"The plane at {url} does not allow anonymous sign-in. Use `arkor login --oauth`."
        )
    credentials = request_anonymous_token(url)
    path = write_credentials(credentials)
    echo(
        f"{style('✓', 'green')} Signed in anonymously to {url} as {credentials.anonymous_id} "
        f"(org {credentials.org_slug})."
    )
    echo(f"  credentials  {path}")
    return 0


def logout() -> int:
    """Forget every stored identity: delete ~/.arkor/credentials.json.

    Examples:

      arkor logout
    """
    from arkor.cli._output import echo, style
    from arkor.cloud import credentials_path, delete_credentials

    path = credentials_path()
    if delete_credentials():
        echo(f"{style('✓', 'green')} Signed out: removed {path}.")
    else:
        echo(f"Not signed in: there were no credentials at {path}.")
    return 0


def whoami(json_output: JsonOption = False) -> int:
    """Print the current identity and the orgs it can reach.

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
        default_arkor_cloud_api_url,
        read_credentials,
    )

    url = default_arkor_cloud_api_url(read_credentials())
    credentials = read_credentials(url)
    if credentials is None:
        if json_output:
            print_json({"url": url, "signedIn": False})
        else:
            echo(f"Not signed in to {url}. Run `arkor login`.")
        return 0
    try:
        with CloudApiClient.from_credentials(credentials) as client:
            me = client.me()
    except CloudApiError as error:
        if json_output:
            print_json({"url": url, "signedIn": True, "error": str(error), "status": error.status})
        else:
            status = f" ({error.status})" if error.status is not None else ""
            echo(f"Failed to fetch /v1/me{status}: {error}")
        return 1 if isinstance(error, UpgradeRequiredError) else 0
    if json_output:
        print_json(
            {
                "url": url,
                "signedIn": True,
                "mode": credentials.mode,
                "user": me.user.to_wire(),
                "orgs": [org.to_wire() for org in me.orgs],
            }
        )
        return 0
    if isinstance(credentials, AnonymousCredentials):
        identity = f"anonymous ({credentials.anonymous_id})"
    else:
        identity = f"{me.user.kind} user {me.user.id}"
    echo(f"Plane     {url}")
    echo(f"Identity  {identity}")
    echo("Orgs" if me.orgs else "Orgs      none")
    width = max((len(org.slug) for org in me.orgs), default=0)
    for org in me.orgs:
        echo(f"  {org.slug:<{width}}  {org.name}")
    return 0
