"""``arkor login``, ``logout`` and ``whoami`` against a real plane, and the deprecation line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from arkor.cloud import AnonymousCredentials, credentials_path, read_credentials, write_credentials
from arkor.server import RunningPlane
from tests.cli.test_cli import heavy_modules_after
from tests.server.conftest import FAKE_WORKER
from tests.utils.cli import CliRunner
from tests.utils.plane import running_plane


@pytest.fixture
def target(plane: RunningPlane, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test plane."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
    return plane.url


def test_login_whoami_logout(cli: CliRunner, target: str) -> None:
    login = cli("login")
    assert login.exit_code == 0, login.stderr
    credentials = read_credentials(target)
    assert isinstance(credentials, AnonymousCredentials)
    assert f"Signed in anonymously to {target} as {credentials.anonymous_id}" in login.stdout
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600

    whoami = cli("whoami")
    assert whoami.exit_code == 0, whoami.stderr
    lines = whoami.stdout.splitlines()
    assert lines[:3] == [
        f"Plane     {target}",
        f"Identity  anonymous ({credentials.anonymous_id})",
        "Orgs",
    ]
    assert lines[3].split()[0] == credentials.org_slug
    assert len(lines) == 4
    as_json = json.loads(cli("whoami", "--json").stdout)
    assert as_json["mode"] == "anon"
    assert [org["slug"] for org in as_json["orgs"]] == [credentials.org_slug]

    assert cli("logout").stdout.startswith(f"✓ Signed out of {target}: its identity is removed")
    assert not credentials_path().exists()  # it was the only plane's record
    again = cli("logout")
    assert again.exit_code == 0
    assert f"Not signed in to {target}: nothing to forget" in again.stdout
    nobody = cli("whoami")
    assert (nobody.exit_code, nobody.stdout) == (
        0,
        f"Not signed in to {target}. Run `arkor login`.\n",
    )


def test_login_again_replaces_only_this_planes_identity(cli: CliRunner, target: str) -> None:
    elsewhere = AnonymousCredentials(
        token="t", anonymous_id="a", arkor_cloud_api_url="http://10.1.2.3:8765", org_slug="o"
    )
    write_credentials(elsewhere)
    assert cli("login", "--anonymous").exit_code == 0
    first = read_credentials(target)
    assert cli("login", "--anonymous").exit_code == 0
    second = read_credentials(target)
    assert first is not None and second is not None and first.token != second.token
    assert read_credentials(elsewhere.arkor_cloud_api_url) == elsewhere
    assert read_credentials() == second  # the plane signed in to last is the default


def test_oauth_on_a_plane_without_it(cli: CliRunner, target: str) -> None:
    result = cli("login", "--oauth")
    assert result.exit_code == 1
    assert f"The plane at {target} offers no OAuth sign-in" in result.stderr
    assert not credentials_path().exists()


def test_both_methods_is_a_usage_error(cli: CliRunner, target: str) -> None:
    result = cli("login", "--anonymous", "--oauth")
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_whoami_reports_cloud_errors_on_stdout_and_exits_0(cli: CliRunner, target: str) -> None:
    write_credentials(
        AnonymousCredentials(
            token="forgotten", anonymous_id="a", arkor_cloud_api_url=target, org_slug="o"
        )
    )
    result = cli("whoami")
    assert result.exit_code == 0
    assert result.stdout.startswith("Failed to fetch /v1/me (401): ")
    assert result.stderr == ""


def test_whoami_on_an_unreachable_plane_exits_0(
    cli: CliRunner, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", closed_url)
    write_credentials(
        AnonymousCredentials(
            token="t", anonymous_id="a", arkor_cloud_api_url=closed_url, org_slug="o"
        )
    )
    result = cli("whoami")
    assert result.exit_code == 0
    assert result.stdout.startswith(
        f"Failed to fetch /v1/me: Cannot reach the Arkor plane at {closed_url}"
    )


def test_login_on_an_unreachable_plane_exits_1(
    cli: CliRunner, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", closed_url)
    result = cli("login")
    assert result.exit_code == 1
    assert "arkor serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_whoami_exits_1_when_the_plane_requires_an_upgrade(
    cli: CliRunner, other_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(other_home, worker_command=FAKE_WORKER, min_client_version="99") as gated:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", gated.url)
        write_credentials(
            AnonymousCredentials(
                token="t", anonymous_id="a", arkor_cloud_api_url=gated.url, org_slug="o"
            )
        )
        result = cli("whoami")
    assert result.exit_code == 1
    assert result.stdout.startswith("Failed to fetch /v1/me (426): ")
    assert "pip install" in result.stdout


def test_deprecation_notice_printed_once_at_the_end(
    cli: CliRunner, other_home: Path, plane: RunningPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deprecated answers during ``login``, one line at the end; the next command is clean."""
    with running_plane(
        other_home, worker_command=FAKE_WORKER, deprecated_below="99", sunset="2030-01-01"
    ) as old:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", old.url)
        login = cli("login")
        whoami = cli("whoami")
    assert login.exit_code == 0, login.stderr
    assert login.stderr.count("deprecated") == 1
    assert login.stderr.startswith(f"warning: {old.url}: arkor ")
    assert login.stderr.rstrip().endswith("Support ends 2030-01-01.")
    assert whoami.stderr.count("deprecated") == 1

    monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
    fresh = cli("login")
    assert fresh.exit_code == 0
    assert fresh.stderr == ""


@pytest.mark.parametrize("command", ["login", "logout", "whoami", "tokens"])
def test_help_imports_nothing_heavy(project: Path, command: str) -> None:
    assert heavy_modules_after([command, "--help"], project) == []
