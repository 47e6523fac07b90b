"""Sign-in through a real OpenID provider: tokens checked, people and orgs, invitations, groups.

The provider is npm's oidc-provider on loopback (tests/utils/oidc.py); every token here comes
from its real authorization-code flow with PKCE.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from arkor.errors import UsageError
from arkor.server import OidcError, RunningPlane, prepare_oidc, run_in_thread
from tests.server.conftest import FAKE_WORKER
from tests.server.test_jobs import create
from tests.utils.oidc import OidcProvider, oidc_provider, signing_key
from tests.utils.plane import Caller, client_headers, plane_settings, running_plane
from tests.utils.ports import free_port


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as running:
        yield running


def oidc_plane(home: Path, provider: OidcProvider, **overrides: Any) -> RunningPlane:
    """A plane signing people in through ``provider`` (no leeway, keys refetched at once)."""
    settings: dict[str, Any] = {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": provider.client_id,
        "oidc_audience": provider.audience,
        "oidc_groups_claim": "groups",
        "oidc_leeway": 0.0,
        "oidc_jwks_refetch": 0.0,
        "worker_command": FAKE_WORKER,
        "ping_interval": 0.2,
        **overrides,
    }
    return run_in_thread(plane_settings(home, **settings))


@pytest.fixture
def plane(tmp_path: Path, provider: OidcProvider) -> Iterator[RunningPlane]:
    running = oidc_plane(tmp_path / "home", provider)
    yield running
    running.stop()


_OPEN: list[Caller] = []


@pytest.fixture(autouse=True)
def _close_callers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def person(plane: RunningPlane, token: str) -> Caller:
    """A client of ``plane`` presenting ``token`` (closed after the test)."""
    http = httpx.Client(base_url=plane.url, headers=client_headers(token), timeout=30)
    caller = Caller(plane.url, token, "", http)
    _OPEN.append(caller)
    return caller


def signed_in(plane: RunningPlane, provider: OidcProvider, user: str) -> Caller:
    """``user`` signed in, with their personal org and a project ``demo`` in it."""
    caller = person(plane, provider.access_token(user))
    me = caller.http.get("/v1/me")
    assert me.status_code == 200, me.text
    caller.org_slug = next(org["slug"] for org in me.json()["orgs"] if "personal" in org["name"])
    created = caller.http.post(
        "/v1/projects", params={"orgSlug": caller.org_slug}, json={"name": "demo", "slug": "demo"}
    )
    assert created.status_code == 201, created.text
    return caller


def user_id(caller: Caller) -> str:
    found: str = caller.http.get("/v1/me").json()["user"]["id"]
    return found


def test_the_plane_advertises_its_provider(plane: RunningPlane, provider: OidcProvider) -> None:
    config = httpx.get(f"{plane.url}/v1/auth/cli/config", headers=client_headers()).json()
    assert config["anonymous"] is True
    assert config["oauth"] == {
        "issuer": provider.issuer,
        "clientId": provider.client_id,
        "audience": provider.audience,
        "authorizeUrl": provider.discovery["authorization_endpoint"],
        "tokenUrl": provider.discovery["token_endpoint"],
        "deviceAuthorizationUrl": provider.discovery["device_authorization_endpoint"],
        "revocationUrl": provider.discovery["revocation_endpoint"],
    }


def test_a_token_for_the_plane_signs_a_person_in_and_the_first_owns_the_plane(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    alice = person(plane, provider.access_token("alice"))
    me = alice.http.get("/v1/me").json()
    assert me["user"] | {"id": None} == {
        "id": None,
        "kind": "oidc",
        "issuer": provider.issuer,
        "subject": "alice",
        "email": "alice@example.com",
        "name": "Alice Example",
        "planeOwner": True,
    }
    assert [org["name"] for org in me["orgs"]] == ["Alice Example (personal)"]
    # a second token of the same person is the same user
    again = person(plane, provider.access_token("alice")).http.get("/v1/me").json()
    assert again["user"]["id"] == me["user"]["id"]
    bob = person(plane, provider.access_token("bob")).http.get("/v1/me").json()
    assert bob["user"]["planeOwner"] is False
    assert bob["user"]["id"] != me["user"]["id"]


def test_an_expired_token_is_401_and_says_to_sign_in_again(tmp_path: Path) -> None:
    # exp is whole seconds after a whole-second iat: a 1 s token may be valid for almost none
    with oidc_provider(access_token_ttl=4) as short:
        running = oidc_plane(tmp_path / "home", short)
        try:
            token = short.access_token("alice")
            assert person(running, token).http.get("/v1/me").status_code == 200
            expires = jwt.decode(token, published_keys(short)).claims["exp"]
            time.sleep(max(0.0, expires - time.time()) + 1.1)
            answer = person(running, token).http.get("/v1/me")
        finally:
            running.stop()
    assert answer.status_code == 401
    assert "expired" in answer.json()["error"] and "arkor login" in answer.json()["error"]


def published_keys(provider: OidcProvider) -> KeySet:
    return KeySet.import_key_set(httpx.get(provider.discovery["jwks_uri"]).json())


def test_a_token_for_another_audience_is_401(plane: RunningPlane, provider: OidcProvider) -> None:
    token = provider.access_token("alice", audience=provider.other_audience)
    answer = person(plane, token).http.get("/v1/me")
    assert answer.status_code == 401
    assert provider.audience in answer.json()["error"]


def test_a_token_of_another_issuer_is_401(plane: RunningPlane) -> None:
    with oidc_provider() as stranger:
        token = stranger.access_token("alice")
    answer = person(plane, token).http.get("/v1/me")
    assert answer.status_code == 401
    assert stranger.issuer in answer.json()["error"]


def test_a_token_signed_with_a_key_the_provider_does_not_publish_is_401(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    genuine = jwt.decode(provider.access_token("alice"), published_keys(provider)).claims
    forged_key = RSAKey.import_key(signing_key())
    forged = jwt.encode(
        {"alg": "RS256", "kid": forged_key.kid, "typ": "at+jwt"},
        {**genuine, "sub": "mallory"},
        forged_key,
    )
    answer = person(plane, forged).http.get("/v1/me")
    assert answer.status_code == 401
    assert "signature" in answer.json()["error"]
    # a genuine token's payload under another header's kid is no better
    with_their_kid = jwt.encode(
        {"alg": "RS256", "kid": provider.keys[0]["kid"]}, {**genuine, "sub": "mallory"}, forged_key
    )
    assert person(plane, with_their_kid).http.get("/v1/me").status_code == 401


def test_tokens_signed_after_a_key_rotation_are_accepted(tmp_path: Path) -> None:
    with oidc_provider() as rotating:
        running = oidc_plane(tmp_path / "home", rotating)
        try:
            before = rotating.access_token("alice")
            assert person(running, before).http.get("/v1/me").status_code == 200
            rotating.rotate_keys()
            after = rotating.access_token("alice")
            assert (
                jwt.decode(after, published_keys(rotating)).header["kid"]
                != (jwt.decode(before, published_keys(rotating)).header["kid"])
            )
            assert person(running, after).http.get("/v1/me").status_code == 200
            assert person(running, before).http.get("/v1/me").status_code == 200
        finally:
            running.stop()


def test_an_invitation_shares_an_org_and_removal_revokes_it(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    alice = signed_in(plane, provider, "alice")
    bob = signed_in(plane, provider, "bob")
    carol = signed_in(plane, provider, "carol")
    job = create(alice, "events:0")
    org = alice.org_slug
    shared = {"orgSlug": org, "projectSlug": "demo"}

    assert bob.http.get("/v1/jobs", params=shared).status_code == 404
    invited = alice.http.post(f"/v1/orgs/{org}/invitations", json={"email": "Bob@Example.com"})
    assert invited.status_code == 201, invited.text
    assert invited.json()["invitation"]["email"] == "bob@example.com"
    # bob's next request takes the invitation up
    listed = bob.http.get("/v1/jobs", params=shared)
    assert listed.status_code == 200, listed.text
    assert [found["id"] for found in listed.json()["jobs"]] == [job["id"]]
    assert bob.http.get(f"/v1/jobs/{job['id']}", params=shared).status_code == 200
    assert org in [found["slug"] for found in bob.http.get("/v1/me").json()["orgs"]]

    assert carol.http.get("/v1/jobs", params=shared).status_code == 404
    assert carol.http.get(f"/v1/jobs/{job['id']}", params=shared).status_code == 404
    assert carol.http.get(f"/v1/orgs/{org}/members").status_code == 404

    members = bob.http.get(f"/v1/orgs/{org}/members").json()
    assert [(m["email"], m["role"], m["source"]) for m in members["members"]] == [
        ("alice@example.com", "owner", "direct"),
        ("bob@example.com", "member", "direct"),
    ]
    # a member may look, not manage
    assert (
        bob.http.post(f"/v1/orgs/{org}/invitations", json={"email": "x@example.com"}).status_code
        == 403
    )

    removed = alice.http.delete(f"/v1/orgs/{org}/members/{user_id(bob)}")
    assert removed.status_code == 204, removed.text
    assert bob.http.get("/v1/jobs", params=shared).status_code == 404
    assert bob.http.get(f"/v1/jobs/{job['id']}", params=shared).status_code == 404
    assert alice.http.delete(f"/v1/orgs/{org}/members/{user_id(bob)}").status_code == 404
    owner = alice.http.delete(f"/v1/orgs/{org}/members/{user_id(alice)}")
    assert owner.status_code == 409


def test_an_unverified_email_does_not_take_up_an_invitation(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    alice = signed_in(plane, provider, "alice")
    assert (
        alice.http.post(
            f"/v1/orgs/{alice.org_slug}/invitations", json={"email": "bob@example.com"}
        ).status_code
        == 201
    )
    eve = person(plane, provider.access_token("eve"))  # claims bob's address, unverified
    orgs = [org["slug"] for org in eve.http.get("/v1/me").json()["orgs"]]
    assert alice.org_slug not in orgs
    pending = alice.http.get(f"/v1/orgs/{alice.org_slug}/members").json()["invitations"]
    assert [invitation["email"] for invitation in pending] == ["bob@example.com"]
    withdrawn = alice.http.delete(f"/v1/orgs/{alice.org_slug}/invitations/bob@example.com")
    assert withdrawn.status_code == 204
    bob = person(plane, provider.access_token("bob"))
    assert alice.org_slug not in [org["slug"] for org in bob.http.get("/v1/me").json()["orgs"]]


def test_the_groups_claim_makes_an_org_its_members_share(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    alice = signed_in(plane, provider, "alice")  # the plane's owner, in no group
    bob = person(plane, provider.access_token("bob"))  # in ml-team
    carol = person(plane, provider.access_token("carol"))
    assert "ml-team" in [org["slug"] for org in bob.http.get("/v1/me").json()["orgs"]]
    made = bob.http.post(
        "/v1/projects", params={"orgSlug": "ml-team"}, json={"name": "shared", "slug": "shared"}
    )
    assert made.status_code == 201, made.text
    assert carol.http.get("/v1/projects", params={"orgSlug": "ml-team"}).status_code == 404
    members = alice.http.get("/v1/orgs/ml-team/members")  # the plane's owner sees every org
    assert members.status_code == 200, members.text
    assert [(m["email"], m["source"]) for m in members.json()["members"]] == [
        ("bob@example.com", "group")
    ]
    refused = alice.http.delete(f"/v1/orgs/ml-team/members/{user_id(bob)}")
    assert refused.status_code == 409
    assert "group `ml-team`" in refused.json()["error"]


def test_a_plane_with_the_groups_claim_off_drops_group_memberships(
    tmp_path: Path, provider: OidcProvider
) -> None:
    home = tmp_path / "home"
    first = oidc_plane(home, provider)
    try:
        bob = person(first, provider.access_token("bob"))
        assert "ml-team" in [org["slug"] for org in bob.http.get("/v1/me").json()["orgs"]]
    finally:
        first.stop()
    second = oidc_plane(home, provider, oidc_groups_claim=None)
    try:
        bob = person(second, provider.access_token("bob"))
        assert "ml-team" not in [org["slug"] for org in bob.http.get("/v1/me").json()["orgs"]]
    finally:
        second.stop()


def test_no_anonymous_refuses_minting(tmp_path: Path, provider: OidcProvider) -> None:
    running = oidc_plane(tmp_path / "home", provider, anonymous=False)
    try:
        config = httpx.get(f"{running.url}/v1/auth/cli/config", headers=client_headers()).json()
        minted = httpx.post(
            f"{running.url}/v1/auth/anonymous", json={"kind": "cli"}, headers=client_headers()
        )
        signed = person(running, provider.access_token("alice")).http.get("/v1/me")
    finally:
        running.stop()
    assert config["anonymous"] is False
    assert minted.status_code == 403
    assert "--no-anonymous" in minted.json()["error"]
    assert signed.status_code == 200


def test_a_plane_without_a_provider_refuses_jwts_and_invitations(
    tmp_path: Path, provider: OidcProvider
) -> None:
    from tests.utils.plane import sign_up

    with running_plane(tmp_path / "home") as running:
        answer = person(running, provider.access_token("alice")).http.get("/v1/me")
        anonymous = sign_up(running.url)
        invited = anonymous.http.post(
            f"/v1/orgs/{anonymous.org_slug}/invitations", json={"email": "bob@example.com"}
        )
        anonymous.close()
    assert answer.status_code == 401
    assert invited.status_code == 409
    assert "OpenID provider" in invited.json()["error"]


def test_settings_that_cannot_work_stop_the_start(tmp_path: Path, provider: OidcProvider) -> None:
    with pytest.raises(UsageError, match="--oidc-client-id"):
        prepare_oidc(plane_settings(tmp_path, oidc_issuer=provider.issuer))
    with pytest.raises(UsageError, match="--no-anonymous"):
        prepare_oidc(plane_settings(tmp_path, anonymous=False))
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OidcError, match="could not be reached") as raised:
        prepare_oidc(plane_settings(tmp_path, oidc_issuer=nowhere, oidc_client_id="arkor-cli"))
    assert "--oidc-issuer" in str(raised.value)
    metadata = prepare_oidc(
        plane_settings(tmp_path, oidc_issuer=provider.issuer, oidc_client_id="arkor-cli")
    )
    assert metadata is not None and metadata.jwks_uri == provider.discovery["jwks_uri"]
