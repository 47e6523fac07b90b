"""The test OpenID provider itself: discovery, a code flow with PKCE, device flow, refresh."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.utils.oidc import DEVICE_GRANT, OidcProvider, oidc_provider, pkce_pair
from tests.utils.ports import free_port


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as running:
        yield running


def claims_of(provider: OidcProvider, token: str) -> dict[str, object]:
    keys = KeySet.import_key_set(httpx.get(provider.discovery["jwks_uri"]).json())
    decoded = jwt.decode(token, keys)
    return dict(decoded.claims)


def test_discovery_names_the_endpoints_a_cli_needs(provider: OidcProvider) -> None:
    document = provider.discovery
    assert document["issuer"] == provider.issuer
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "device_authorization_endpoint",
        "revocation_endpoint",
    ):
        assert document[endpoint].startswith(provider.issuer + "/")
    assert document["code_challenge_methods_supported"] == ["S256"]


def test_code_flow_with_pkce_on_any_loopback_port_yields_a_jwt_for_the_audience(
    provider: OidcProvider,
) -> None:
    verifier, challenge = pkce_pair()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    state = secrets.token_urlsafe(8)
    url = provider.authorize_url(state=state, code_challenge=challenge, redirect_uri=redirect_uri)
    back = provider.approve(url, "bob")
    assert back.startswith(redirect_uri + "?")
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == [state]
    answer = httpx.post(
        provider.discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "client_id": provider.client_id,
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    claims = claims_of(provider, tokens["access_token"])
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == provider.audience
    assert claims["sub"] == "bob"
    assert claims["email"] == "bob@example.com"
    assert claims["groups"] == ["ml-team"]
    assert tokens["refresh_token"]

    refreshed = httpx.post(
        provider.discovery["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "client_id": provider.client_id,
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims_of(provider, refreshed.json()["access_token"])["aud"] == provider.audience


def test_pkce_is_required(provider: OidcProvider) -> None:
    url = provider.authorize_url(state="s", code_challenge="x")
    without = url.replace("&code_challenge=x&code_challenge_method=S256", "")
    back = provider.approve(without, "alice")
    assert "error=invalid_request" in back


def test_another_audience_and_the_device_flow(provider: OidcProvider) -> None:
    other = provider.access_token("carol", audience=provider.other_audience)
    assert claims_of(provider, other)["aud"] == provider.other_audience

    started = httpx.post(
        provider.discovery["device_authorization_endpoint"],
        data={"client_id": provider.client_id, "scope": "openid email profile"},
    ).json()
    provider.approve_device(started["user_code"], "alice", started["verification_uri"])
    answer = httpx.post(
        provider.discovery["token_endpoint"],
        data={
            "grant_type": DEVICE_GRANT,
            "client_id": provider.client_id,
            "device_code": started["device_code"],
        },
    )
    assert answer.status_code == 200, answer.text
    claims = claims_of(provider, answer.json()["access_token"])
    assert (claims["sub"], claims["aud"]) == ("alice", provider.audience)
