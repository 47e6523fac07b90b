"""The credentials file: mode 0600, atomic writes, one record per plane, URL resolution."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from arkor._home import arkor_home
from arkor.cloud import (
    DEFAULT_ARKOR_CLOUD_API_URL,
    AnonymousCredentials,
    CredentialsError,
    OAuthCredentials,
    credentials_path,
    default_arkor_cloud_api_url,
    delete_credentials,
    normalize_url,
    read_credentials,
    write_credentials,
)

PLANE_A = "http://127.0.0.1:8765"
PLANE_B = "http://10.0.0.7:9000"


def anon(url: str = PLANE_A, token: str = "tok-a") -> AnonymousCredentials:
    return AnonymousCredentials(
        token=token, anonymous_id=f"anon-{token}", arkor_cloud_api_url=url, org_slug=f"org-{token}"
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_path_is_under_arkor_home() -> None:
    assert credentials_path() == arkor_home() / "credentials.json"


def test_write_is_0600_in_the_seed_shape() -> None:
    """One plane: the plain camelCase record the TypeScript SDK writes, readable only by us."""
    path = write_credentials(anon())
    assert path == credentials_path()
    assert mode_of(path) == 0o600
    assert json.loads(path.read_text()) == {
        "mode": "anon",
        "token": "tok-a",
        "anonymousId": "anon-tok-a",
        "arkorCloudApiUrl": PLANE_A,
        "orgSlug": "org-tok-a",
    }
    assert read_credentials() == anon()
    assert read_credentials(PLANE_A + "/") == anon()


def test_loose_file_is_fixed_by_write_and_by_read() -> None:
    path = write_credentials(anon())
    path.chmod(0o644)
    write_credentials(anon(token="tok-new"))
    assert mode_of(path) == 0o600
    path.chmod(0o664)
    assert read_credentials() == anon(token="tok-new")
    assert mode_of(path) == 0o600


def test_failed_write_leaves_the_old_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename is the commit point: a failure before it keeps the old bytes, no temp file."""
    path = write_credentials(anon())
    before = path.read_bytes()

    def broken_replace(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_credentials(anon(token="tok-lost"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]


def test_seed_record_written_elsewhere_is_read() -> None:
    """A record another Arkor client wrote (extra keys included) is read as it is."""
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "mode": "oauth",
                "accessToken": "at",
                "refreshToken": "rt",
                "expiresAt": 1767225600000,
                "issuer": "https://auth.example",
                "audience": "arkor",
                "clientId": "cli",
                "someFutureField": True,
            }
        )
    )
    credentials = read_credentials()
    assert isinstance(credentials, OAuthCredentials)
    assert credentials.bearer_token == "at"
    assert read_credentials(DEFAULT_ARKOR_CLOUD_API_URL) == credentials  # no URL: the default plane


def test_one_record_per_plane() -> None:
    """A second plane's record sits beside the first; each is found by its URL."""
    write_credentials(anon(PLANE_A, "tok-a"))
    write_credentials(anon(PLANE_B, "tok-b"), make_default=False)
    assert read_credentials(PLANE_A) == anon(PLANE_A, "tok-a")
    assert read_credentials(PLANE_B) == anon(PLANE_B, "tok-b")
    assert read_credentials("http://elsewhere:1") is None
    assert read_credentials() == anon(PLANE_A, "tok-a")
    document = json.loads(credentials_path().read_text())
    assert document["default"] == PLANE_A
    assert set(document["planes"]) == {PLANE_A, PLANE_B}
    assert mode_of(credentials_path()) == 0o600

    write_credentials(anon(PLANE_B, "tok-b2"))  # a login there makes it the default
    assert read_credentials() == anon(PLANE_B, "tok-b2")
    assert read_credentials(PLANE_A) == anon(PLANE_A, "tok-a")


def test_replacing_the_only_plane_keeps_the_seed_shape() -> None:
    write_credentials(anon(PLANE_A, "tok-1"))
    write_credentials(anon(PLANE_A, "tok-2"))
    assert json.loads(credentials_path().read_text())["token"] == "tok-2"


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"mode": "anon"}', '{"mode": "x"}', '{"planes": []}']
)
def test_invalid_file_is_a_clear_error(text: str) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(CredentialsError) as raised:
        read_credentials()
    assert str(path) in str(raised.value)
    assert "arkor logout" in str(raised.value)


def test_missing_file_reads_as_none_and_logout_says_so() -> None:
    assert read_credentials() is None
    assert delete_credentials() is False
    write_credentials(anon())
    assert delete_credentials() is True
    assert not credentials_path().exists()


def test_base_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARKOR_CLOUD_API_URL, then the credentials' plane, then the local plane."""
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    assert default_arkor_cloud_api_url() == DEFAULT_ARKOR_CLOUD_API_URL == "http://127.0.0.1:8765"
    assert default_arkor_cloud_api_url(anon(PLANE_B + "/")) == PLANE_B
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "HTTP://Plane.Example:8000/api/")
    assert default_arkor_cloud_api_url(anon(PLANE_B)) == "http://plane.example:8000/api"
    assert default_arkor_cloud_api_url() == "http://plane.example:8000/api"
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "  ")
    assert default_arkor_cloud_api_url() == DEFAULT_ARKOR_CLOUD_API_URL


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        (" https://API.Arkor.ai ", "https://api.arkor.ai"),
        ("http://host:1/prefix//", "http://host:1/prefix"),
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal
