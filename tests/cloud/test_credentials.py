"""The credentials file: mode 0600, atomic writes, one record per plane, URL resolution."""

from __future__ import annotations

import json
import os
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
from tests.utils.cli import CliRunner

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
    assert "Delete it and run `arkor login`" in str(raised.value)


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


def test_a_file_keyed_by_url_from_before_plane_ids_is_read() -> None:
    """The several-planes shape an older arkor wrote: records without ``planeId``, by URL."""
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "default": PLANE_B + "/",
                "planes": {PLANE_A: anon(PLANE_A).to_wire(), PLANE_B: anon(PLANE_B, "b").to_wire()},
            }
        )
    )
    assert read_credentials() == anon(PLANE_B, "b")
    assert read_credentials(PLANE_A) == anon(PLANE_A)
    write_credentials(anon(PLANE_A, "pinned").model_copy(update={"plane_id": "plane_x"}))
    document = json.loads(path.read_text())
    assert set(document["planes"]) == {PLANE_A, PLANE_B, "plane_x"}
    assert document["default"] == "plane_x"
    assert read_credentials(plane_id="plane_x") == anon(PLANE_A, "pinned").model_copy(
        update={"plane_id": "plane_x"}
    )


def one_paragraph(text: str) -> bool:
    return bool(text.strip()) and "\n\n" not in text.strip() and "Traceback" not in text


def test_a_symlinked_file_is_refused_and_its_target_left_alone(
    cli: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(anon().to_wire()))
    target.chmod(0o644)
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    result = cli("whoami")
    assert result.exit_code == 2
    assert f"{path} is a symbolic link, not a regular file" in result.stderr
    assert one_paragraph(result.stderr)
    assert mode_of(target) == 0o644  # never chmod-ed through the link
    with pytest.raises(CredentialsError):
        write_credentials(anon(token="other"))
    assert path.is_symlink() and json.loads(target.read_text())["token"] == "tok-a"


def test_a_fifo_is_refused_without_hanging(cli: CliRunner) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    result = cli("whoami")  # would block forever on open() without O_NONBLOCK
    assert result.exit_code == 2
    assert "is a named pipe (FIFO), not a regular file" in result.stderr
    assert one_paragraph(result.stderr)


def test_a_folder_is_refused(cli: CliRunner) -> None:
    credentials_path().mkdir(parents=True)
    result = cli("whoami")
    assert result.exit_code == 2
    assert "is a folder, not a regular file" in result.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'{"mode": "anon", "token": "\xff\xfe"}',
            "it is not UTF-8 text: the byte at offset 27 cannot",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "its JSON is nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "its JSON is nested too deeply"),
    ],
    ids=["invalid-utf8", "nested-arrays", "nested-objects"],
)
def test_undecodable_files_are_a_config_error(cli: CliRunner, content: bytes, reason: str) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = cli("whoami")
    assert result.exit_code == 2
    assert f"{path} is not a valid Arkor credentials file ({reason}" in result.stderr
    assert "Delete it and run `arkor login`" in result.stderr
    assert one_paragraph(result.stderr)
