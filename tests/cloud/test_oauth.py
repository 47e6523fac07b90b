"""The client's OpenID sign-in against a real provider (npm oidc-provider) and a real plane.

The browser is the provider helper walking its own login and consent pages with httpx, handed
the authorization URL the flow opens; everything else is real HTTP on loopback.
"""

from __future__ import annotations

import itertools
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from arkor.cloud import (
    CloudApiClient,
    OAuthConfig,
    OAuthCredentials,
    OAuthSignInError,
    authorized_client,
    credentials_path,
    ensure_credentials,
    oauth_credentials,
    read_credentials,
    refresh_oauth,
    revoke_oauth,
    sign_in_with_browser,
    sign_in_with_device,
    write_credentials,
)
from arkor.server import RunningPlane
from tests.server.conftest import FAKE_WORKER
from tests.utils.oidc import OidcProvider, oidc_provider
from tests.utils.plane import running_plane


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as running:
        yield running


def oidc_plane(home: Path, provider: OidcProvider, **overrides: Any) -> Any:
    """A plane (``arkor serve --oidc-issuer …``) that signs people in through ``provider``."""
    return running_plane(
        home,
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_audience=provider.audience,
        oidc_leeway=0.0,
        worker_command=FAKE_WORKER,
        **overrides,
    )


@pytest.fixture(scope="module")
def plane(
    tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider
) -> Iterator[RunningPlane]:
    with oidc_plane(tmp_path_factory.mktemp("oidc-plane"), provider) as running:
        yield running


def config_of(plane: RunningPlane) -> OAuthConfig:
    """What the plane tells a CLI about its provider (``GET /v1/auth/cli/config``)."""
    with CloudApiClient(plane.url) as client:
        oauth = client.cli_config().oauth
    assert oauth is not None
    return oauth


def approving(provider: OidcProvider, user: str) -> Any:
    """A browser that signs ``user`` in at the URL it is opened with."""

    def browser(url: str) -> bool:
        provider.approve(url, user, deliver=True)
        return True

    return browser


def signed_in(plane: RunningPlane, provider: OidcProvider, user: str) -> OAuthCredentials:
    """``user``'s sign-in to ``plane`` through the browser flow, stored in the file."""
    config = config_of(plane)
    token = sign_in_with_browser(
        config, say=lambda _: None, open_browser=approving(provider, user), timeout=30
    )
    with CloudApiClient(plane.url) as client:
        plane_id = client.cli_config().plane_id
    credentials = oauth_credentials(token, config, url=plane.url, plane_id=plane_id)
    write_credentials(credentials)
    return credentials


def claims(provider: OidcProvider, token: str) -> dict[str, Any]:
    """The verified claims of an access token the provider signed."""
    key = RSAKey.import_key(provider.keys[0])
    found: dict[str, Any] = jwt.decode(token, key).claims
    return found


# --- the browser flow ------------------------------------------------------------------------


def test_the_browser_flow_signs_in_with_pkce_on_a_loopback_port(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    config = config_of(plane)
    opened: list[str] = []
    pages: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        redirect = provider.approve(url, "alice")
        pages.append(httpx.get(redirect, timeout=30).text)
        shown.set()
        return True

    shown = threading.Event()
    said: list[str] = []
    token = sign_in_with_browser(config, say=said.append, open_browser=browser, timeout=30)
    assert shown.wait(30)

    query = parse_qs(urlsplit(opened[0]).query)
    redirect = urlsplit(query["redirect_uri"][0])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port not in (None, 80, 8765)
    assert query["code_challenge_method"] == ["S256"]
    assert query["resource"] == [config.audience]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile", "offline_access"}
    assert len(query["state"][0]) >= 32
    assert said[-1] == f"  {opened[0]}"
    assert "You can close this tab" in pages[0]
    found = claims(provider, token["access_token"])
    assert (found["sub"], found["aud"], found["iss"]) == ("alice", config.audience, config.issuer)
    assert token["refresh_token"]
    assert token["expires_at"] > time.time() + 200


def test_an_answer_with_another_state_is_refused(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    pages: list[str] = []

    def forged(url: str) -> bool:
        redirect = urlsplit(provider.approve(url, "alice"))
        query = {key: values[0] for key, values in parse_qs(redirect.query).items()}
        query["state"] = "not-the-state-this-sign-in-sent"
        pages.append(httpx.get(urlunsplit(redirect._replace(query=urlencode(query)))).text)
        shown.set()
        return True

    shown = threading.Event()
    with pytest.raises(OAuthSignInError) as refused:
        sign_in_with_browser(config_of(plane), say=lambda _: None, open_browser=forged, timeout=30)
    assert shown.wait(30)
    assert "does not carry the state this sign-in sent, so it was refused" in str(refused.value)
    assert "Sign-in refused" in pages[0]


def test_a_cancelled_sign_in_is_one_paragraph(plane: RunningPlane, provider: OidcProvider) -> None:
    def cancelling(url: str) -> bool:
        with httpx.Client(timeout=30) as http:
            page = http.get(url, follow_redirects=True)
            found = re.search(r'href="([^"]+/abort)"', page.text)
            assert found is not None, page.text
            answer = http.get(found.group(1))
            while answer.is_redirect:
                location = urljoin(str(answer.url), answer.headers["location"])
                if not location.startswith(provider.issuer + "/"):
                    httpx.get(location, timeout=30)
                    return True
                answer = http.get(location)
        raise AssertionError("the provider did not send the browser back")

    with pytest.raises(OAuthSignInError) as denied:
        sign_in_with_browser(
            config_of(plane), say=lambda _: None, open_browser=cancelling, timeout=30
        )
    message = str(denied.value)
    assert message.startswith(
        f"The OpenID provider {provider.issuer} refused the sign-in (access_denied"
    )
    assert "run `arkor login --oauth` to try again" in message
    assert "\n" not in message


def test_no_answer_from_the_browser_times_out_clearly(plane: RunningPlane) -> None:
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(OAuthSignInError) as late:
        sign_in_with_browser(config_of(plane), say=said.append, open_browser=None, timeout=0.5)
    assert time.monotonic() - started < 5
    assert said[0].startswith("Open this URL in a browser on this machine")
    assert "No answer from the browser sign-in" in str(late.value)
    assert "`arkor login --device`" in str(late.value)


# --- the device flow -------------------------------------------------------------------------


def test_the_device_flow_polls_until_the_code_is_confirmed(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    config = config_of(plane)
    waits: list[float] = []
    approvals: list[threading.Thread] = []

    def say(line: str) -> None:
        found = re.search(r"confirm the code (\S+)\.", line)
        if found:
            approval = threading.Thread(target=provider.approve_device, args=(found[1], "bob"))
            approval.start()
            approvals.append(approval)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.2)  # faster than asked: the provider answers slow_down

    token = sign_in_with_device(config, say=say, sleep=sleep)
    approvals[0].join(30)
    assert claims(provider, token["access_token"])["sub"] == "bob"
    assert token["refresh_token"]
    assert waits[0] == 5
    assert all(later - earlier in (0, 5) for earlier, later in itertools.pairwise(waits))


def test_a_provider_without_a_device_endpoint_says_so(plane: RunningPlane) -> None:
    config = config_of(plane).model_copy(update={"device_authorization_url": None})
    with pytest.raises(OAuthSignInError, match="offers no device sign-in"):
        sign_in_with_device(config, say=lambda _: None)


# --- keeping the sign-in fresh ---------------------------------------------------------------


def test_a_token_near_expiry_is_refreshed_and_written_back(
    tmp_path: Path, provider: OidcProvider
) -> None:
    with (
        oidc_provider(access_token_ttl=30) as short,
        oidc_plane(tmp_path / "plane", short) as plane,
    ):
        first = signed_in(plane, short, "alice")
        assert first.expires_at is not None and first.expires_at - time.time() < 60
        with authorized_client(first, via=plane.url) as client:
            assert client.me().user.subject == "alice"
        stored = read_credentials(plane.url)
        assert isinstance(stored, OAuthCredentials)
        assert stored.access_token != first.access_token
        assert stored.refresh_token != first.refresh_token  # the provider rotates them
        assert stored.expires_at is not None and stored.expires_at >= first.expires_at
        assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
        # another command still holding the spent record renews the stored one instead
        renewed = refresh_oauth(first, config_of(plane))
        assert renewed.refresh_token not in (first.refresh_token, stored.refresh_token)
        assert read_credentials(plane.url) == renewed


def test_a_client_built_from_oauth_credentials_renews_them_too(
    tmp_path: Path, provider: OidcProvider
) -> None:
    """The SDK's way in (``CloudApiClient.from_credentials``) refreshes as the CLI does."""
    with (
        oidc_provider(access_token_ttl=30) as short,
        oidc_plane(tmp_path / "plane", short) as plane,
    ):
        first = signed_in(plane, short, "alice")
        with CloudApiClient.from_credentials(first, via=plane.url) as client:
            assert client.me().user.subject == "alice"
        stored = read_credentials(plane.url)
        assert isinstance(stored, OAuthCredentials)
        assert stored.access_token != first.access_token


def test_an_access_token_the_plane_refuses_is_refreshed_once(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    good = signed_in(plane, provider, "alice")
    wrong = good.model_copy(
        update={"access_token": provider.access_token("alice", audience=provider.other_audience)}
    )
    write_credentials(wrong)
    with authorized_client(wrong, via=plane.url) as client:
        assert client.me().user.subject == "alice"
    stored = read_credentials(plane.url)
    assert isinstance(stored, OAuthCredentials)
    assert stored.access_token not in (good.access_token, wrong.access_token)


def test_a_revoked_sign_in_asks_to_log_in_again(
    plane: RunningPlane, provider: OidcProvider
) -> None:
    credentials = signed_in(plane, provider, "alice")
    assert revoke_oauth(credentials, config_of(plane)) is None
    expired = credentials.model_copy(update={"expires_at": time.time() - 1})
    write_credentials(expired)
    with (
        authorized_client(expired, via=plane.url) as client,
        pytest.raises(OAuthSignInError) as ended,
    ):
        client.me()
    message = str(ended.value)
    assert message.startswith(
        f"Your sign-in to {plane.url} through {provider.issuer} could not be renewed (invalid_grant"
    )
    assert message.endswith("Run `arkor login` again.")
    assert ended.value.exit_code == 1
    assert credentials.refresh_token not in message and credentials.access_token not in message


def test_a_plane_without_anonymous_sign_in_asks_for_oauth(
    tmp_path: Path, provider: OidcProvider
) -> None:
    with (
        oidc_plane(tmp_path / "plane", provider, anonymous=False) as plane,
        pytest.raises(OAuthSignInError) as refused,
    ):
        ensure_credentials(plane.url)
    assert str(refused.value) == (
        f"Not signed in to {plane.url}, and that plane signs people in only through "
        f"{provider.issuer}. Run `arkor login --oauth` first."
    )


def test_a_device_sign_in_the_provider_refuses_is_one_paragraph(plane: RunningPlane) -> None:
    config = config_of(plane).model_copy(update={"client_id": "not-registered"})
    with pytest.raises(OAuthSignInError) as refused:
        sign_in_with_device(config, say=lambda _: None)
    assert str(refused.value).startswith(
        f"The OpenID provider {config.issuer} refused the device sign-in (invalid_client"
    )
