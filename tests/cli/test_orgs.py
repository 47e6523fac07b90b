"""``arkor orgs``: invite, list and remove people on a team plane signed in through a real
OpenID provider (npm's oidc-provider on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arkor.cloud import OAuthCredentials, write_credentials
from arkor.server import RunningPlane, run_in_thread
from tests.utils.cli import CliRunner
from tests.utils.oidc import OidcProvider, oidc_provider
from tests.utils.plane import client_headers, plane_settings


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture
def plane(
    tmp_path: Path, provider: OidcProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPlane]:
    """A team plane, which this folder's commands use."""
    running = run_in_thread(
        plane_settings(
            tmp_path / "plane-home",
            oidc_issuer=provider.issuer,
            oidc_client_id=provider.client_id,
            oidc_audience=provider.audience,
            anonymous=False,
        )
    )
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", running.url)
    yield running
    running.stop()


def sign_in(plane: RunningPlane, provider: OidcProvider, user: str) -> str:
    """Store ``user``'s access token as this CLI's sign-in to ``plane``; return the token."""
    token = provider.access_token(user)
    plane_id = httpx.get(f"{plane.url}/v1/auth/cli/config", headers=client_headers()).json()[
        "planeId"
    ]
    write_credentials(
        OAuthCredentials(
            access_token=token,
            issuer=provider.issuer,
            audience=provider.audience,
            client_id=provider.client_id,
            arkor_cloud_api_url=plane.url,
            plane_id=plane_id,
        )
    )
    return token


def orgs_of(plane: RunningPlane, token: str) -> list[str]:
    me = httpx.get(f"{plane.url}/v1/me", headers=client_headers(token)).json()
    return [org["slug"] for org in me["orgs"]]


def test_invite_list_and_remove(
    cli: CliRunner, plane: RunningPlane, provider: OidcProvider
) -> None:
    bob = provider.access_token("bob")
    orgs_of(plane, bob)  # bob has signed in before; he joins on his next request
    alice = sign_in(plane, provider, "alice")
    [org] = orgs_of(plane, alice)

    invited = cli("orgs", "invite", "bob@example.com")
    assert invited.exit_code == 0, invited.stderr
    assert f"Invited bob@example.com to {org}" in invited.stdout
    pending = json.loads(cli("orgs", "members", "--json").stdout)
    assert [invitation["email"] for invitation in pending["invitations"]] == ["bob@example.com"]

    assert org in orgs_of(plane, bob)
    listed = cli("orgs", "members", "--org", org)
    assert listed.exit_code == 0, listed.stderr
    assert "owner   alice@example.com  Alice Example" in listed.stdout
    assert "member  bob@example.com  Bob Example" in listed.stdout

    removed = cli("orgs", "remove", "bob@example.com")
    assert removed.exit_code == 0, removed.stderr
    assert f"Removed bob@example.com from {org}" in removed.stdout
    assert org not in orgs_of(plane, bob)

    unknown = cli("orgs", "remove", "bob@example.com")
    assert unknown.exit_code == 2
    assert "neither a member" in unknown.stderr


def test_a_member_cannot_invite_and_a_bad_address_is_a_usage_error(
    cli: CliRunner, plane: RunningPlane, provider: OidcProvider
) -> None:
    alice = provider.access_token("alice")
    [alice_org] = orgs_of(plane, alice)  # the first to sign in: she owns the plane
    bob = sign_in(plane, provider, "bob")
    [personal] = orgs_of(plane, bob)
    malformed = cli("orgs", "invite", "not-an-address", "--org", personal)
    assert malformed.exit_code == 2
    assert "not an email address" in malformed.stderr
    outside = cli("orgs", "invite", "carol@example.com", "--org", alice_org)
    assert outside.exit_code == 1
    assert "not found" in outside.stderr
