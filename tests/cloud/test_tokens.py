"""A token goes only to the plane that issued it: another plane gets its own identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.cloud import (
    AuthError,
    CloudApiClient,
    ensure_credentials,
    read_credentials,
)
from arkor.server import RunningPlane
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import running_plane
from tests.utils.proxy import TcpProxy


def test_ensure_credentials_mints_once_and_persists(plane: RunningPlane) -> None:
    first = ensure_credentials(plane.url)
    assert read_credentials() == first == read_credentials(plane.url)
    assert ensure_credentials(plane.url + "/") == first
    with CloudApiClient.from_credentials(first) as client:
        assert client.me().user.anonymous_id == first.anonymous_id


def test_a_second_plane_gets_its_own_identity_and_never_sees_the_first_token(
    plane: RunningPlane, other_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything the client sends to plane B passes a recording proxy: A's token is not in it."""
    home = ensure_credentials(plane.url)
    with (
        running_plane(other_home, worker_command=FAKE_WORKER) as other,
        TcpProxy(other.url.removeprefix("http://")) as recorder,
    ):
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", recorder.url)
        away = ensure_credentials()
        with CloudApiClient.from_credentials(away) as client:
            me = client.me()
        assert ensure_credentials() == away  # persisted for that plane
        sent_to_b = bytes(recorder.received)

        # B's own auth would refuse A's token anyway: it is not valid there.
        with CloudApiClient(other.url, home.token) as client, pytest.raises(AuthError) as raised:
            client.me()

    assert away.arkor_cloud_api_url == recorder.url
    assert away.anonymous_id != home.anonymous_id
    assert me.user.anonymous_id == away.anonymous_id
    assert home.token.encode() not in sent_to_b
    assert f"Bearer {away.token}".encode() in sent_to_b
    assert raised.value.status == 401

    assert read_credentials(plane.url) == home  # A's record is untouched
    assert read_credentials() == home  # and a one-off target did not become the default
    monkeypatch.delenv("ARKOR_CLOUD_API_URL")
    assert ensure_credentials() == home


def test_from_credentials_targets_the_issuing_plane(plane: RunningPlane) -> None:
    credentials = ensure_credentials(plane.url)
    with CloudApiClient.from_credentials(credentials) as client:
        assert client.base_url == plane.url
        assert client.token == credentials.token
