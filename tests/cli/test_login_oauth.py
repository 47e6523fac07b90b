"""``arkor login --oauth``, ``whoami`` and ``logout`` against a plane started with an OpenID issuer.

The provider is npm's oidc-provider on loopback (tests/utils/oidc.py). The browser the CLI opens
is ``webbrowser.open``, replaced by the provider helper walking its own pages as the person; the
device flow runs ``arkor`` as a child process and confirms the code it prints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.cloud import (
    CloudApiClient,
    FileDatasetSource,
    JobConfig,
    JobCreate,
    OAuthCredentials,
    OAuthSignInError,
    ProjectState,
    authorized_client,
    credentials_path,
    read_credentials,
    refresh_oauth,
    revoke_oauth,
    write_credentials,
    write_state,
)
from arkor.server import RunningPlane
from tests.cloud.conftest import DATA
from tests.server.conftest import FAKE_WORKER
from tests.utils.cli import CliRunner
from tests.utils.oidc import OidcProvider, oidc_provider
from tests.utils.plane import running_plane
from tests.utils.process import OutputLines


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture(scope="module")
def plane(
    tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider
) -> Iterator[RunningPlane]:
    """``arkor serve --oidc-issuer … --oidc-client-id arkor-cli --oidc-audience urn:arkor:plane``."""
    with running_plane(
        tmp_path_factory.mktemp("oidc-plane"),
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_audience=provider.audience,
        oidc_leeway=0.0,
        worker_command=FAKE_WORKER,
    ) as running:
        yield running


@pytest.fixture
def target(plane: RunningPlane, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test plane."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
    return plane.url


class Browser:
    """Stands in for ``webbrowser.open``: signs :attr:`user` in at the URL the CLI opens."""

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider
        self.user = "alice"
        self.opened: list[str] = []

    def __call__(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.opened.append(url)
        self.provider.approve(url, self.user, deliver=True)
        return True


@pytest.fixture
def browser(provider: OidcProvider, monkeypatch: pytest.MonkeyPatch) -> Browser:
    """A machine with a display whose browser signs a person in."""
    opener = Browser(provider)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(webbrowser, "open", opener)
    return opener


def no_token_in(text: str, credentials: OAuthCredentials) -> bool:
    secrets = [credentials.access_token, credentials.refresh_token or "never"]
    return not any(secret in text for secret in secrets)


def test_login_whoami_logout(
    cli: CliRunner,
    target: str,
    browser: Browser,
    provider: OidcProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    login = cli("login", "--oauth")
    assert login.exit_code == 0, login.stderr
    assert login.stdout.startswith(f"Opening your browser to sign in through {provider.issuer}")
    assert (
        f"✓ Signed in to {target} as Alice Example <alice@example.com> through {provider.issuer}."
        in login.stdout
    )
    assert browser.opened and browser.opened[0] in login.stdout
    record = read_credentials(target)
    assert isinstance(record, OAuthCredentials)
    assert (record.issuer, record.audience, record.client_id) == (
        provider.issuer,
        provider.audience,
        provider.client_id,
    )
    assert record.plane_id is not None and record.refresh_token
    assert record.expires_at is not None and record.expires_at > time.time() + 200
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
    document = json.loads(credentials_path().read_text())
    assert document["mode"] == "oauth" and document["arkorCloudApiUrl"] == target

    whoami = cli("whoami")
    assert whoami.exit_code == 0, whoami.stderr
    lines = whoami.stdout.splitlines()
    assert lines[:4] == [
        f"Plane     {target}",
        "Identity  Alice Example <alice@example.com>",
        f"Issuer    {provider.issuer}",
        "Orgs",
    ]
    assert len(lines) > 4
    as_json = json.loads(cli("whoami", "--json").stdout)
    assert as_json["mode"] == "oauth"
    assert as_json["user"]["email"] == "alice@example.com"

    with CloudApiClient(target) as plane_client:
        config = plane_client.cli_config().oauth
    assert config is not None
    logout = cli("logout")
    assert logout.exit_code == 0, logout.stderr
    assert logout.stdout == (
        f"✓ Signed out of {target}: its identity is removed from {credentials_path()} and its "
        f"refresh token revoked at {provider.issuer}.\n"
    )
    assert not credentials_path().exists()
    with pytest.raises(OAuthSignInError, match="invalid_grant"):
        refresh_oauth(record, config)
    everything = "".join(
        [login.stdout, login.stderr, whoami.stdout, whoami.stderr, logout.stdout, caplog.text]
    )
    assert no_token_in(everything, record)


def test_a_sign_in_that_cannot_be_renewed_exits_1(
    cli: CliRunner, target: str, browser: Browser, provider: OidcProvider
) -> None:
    assert cli("login", "--oauth").exit_code == 0
    record = read_credentials(target)
    assert isinstance(record, OAuthCredentials)
    with CloudApiClient(target) as plane_client:
        config = plane_client.cli_config().oauth
    assert config is not None
    assert revoke_oauth(record, config) is None
    write_credentials(record.model_copy(update={"expires_at": time.time() + 10}))
    result = cli("tokens", "list")
    assert result.exit_code == 1
    assert (
        f"Your sign-in to {target} through {provider.issuer} could not be renewed" in result.stderr
    )
    assert "Run `arkor login` again." in result.stderr
    assert no_token_in(result.stdout + result.stderr, record)


def run_login(
    provider: OidcProvider, user: str, *args: str, env: dict[str, str]
) -> tuple[int, str]:
    """``arkor login ARGS`` in a child process; ``user`` confirms the device code it prints,
    or signs in at the URL it prints, through the provider's own pages."""
    process = subprocess.Popen(
        [sys.executable, "-m", "arkor", "login", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines = OutputLines(process.stdout)
    try:
        line = lines.wait_for(lambda seen: "confirm the code" in seen or "/auth?" in seen, 60)
        code = re.search(r"confirm the code (\S+)\.", line)
        if code is not None:
            provider.approve_device(code[1], user)
        else:
            provider.approve(line.strip(), user, deliver=True)
        status = process.wait(timeout=60)
        lines.rest(timeout=10)
        return status, "".join(lines.seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def headless() -> dict[str, str]:
    """This environment without a display."""
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


@pytest.mark.parametrize(
    ("args", "display"),
    [(("--oauth",), None), (("--device",), ":0")],
    ids=["no-display", "device-flag"],
)
def test_the_device_flow_without_a_browser(
    target: str, provider: OidcProvider, args: tuple[str, ...], display: str | None
) -> None:
    env = headless() | ({"DISPLAY": display} if display else {})
    status, output = run_login(provider, "bob", *args, env=env)
    assert status == 0, output
    assert "To sign in through" in output and "confirm the code" in output
    assert f"✓ Signed in to {target} as Bob Example <bob@example.com>" in output
    record = read_credentials(target)
    assert isinstance(record, OAuthCredentials)
    assert no_token_in(output, record)


def test_no_browser_prints_the_url_to_open(target: str, provider: OidcProvider) -> None:
    status, output = run_login(provider, "carol", "--oauth", "--no-browser", env=headless())
    assert status == 0, output
    assert "Open this URL in a browser on this machine" in output
    assert "confirm the code" not in output
    assert f"✓ Signed in to {target} as Carol Example <carol@example.com>" in output


# --- a team plane end to end ---------------------------------------------------------------


def sign_in_as(
    cli: CliRunner, browser: Browser, user: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``user`` runs `arkor login --oauth` in a home of their own."""
    monkeypatch.setenv("ARKOR_HOME", str(home))
    browser.user = user
    result = cli("login", "--oauth")
    assert result.exit_code == 0, result.stderr


def test_two_people_share_an_org_and_a_third_is_kept_out(
    cli: CliRunner,
    target: str,
    browser: Browser,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sign_in_as(cli, browser, "alice", tmp_path / "alice", monkeypatch)
    alice = read_credentials(target)
    assert alice is not None
    with authorized_client(alice) as client:
        org = next(org for org in client.me().orgs if "personal" in org.name.lower())
        created = client.create_project(org.slug, name="Shared", slug="shared")
        scope = ProjectState(org_slug=org.slug, project_slug="shared", project_id=created.id)
        upload = client.upload(scope, DATA, filename="train.jsonl")
        config = JobConfig(model="tiny", dataset_source=FileDatasetSource(upload_id=upload.id))
        job = client.create_job(scope, JobCreate(name="shared-run", config=config))
        client.invite(org.slug, "bob@example.com")
    write_state(scope, project)
    listed = cli("jobs", "list")
    assert listed.exit_code == 0, listed.stderr
    assert job.id in listed.stdout

    sign_in_as(cli, browser, "bob", tmp_path / "bob", monkeypatch)
    shared = cli("jobs", "list")
    assert shared.exit_code == 0, shared.stderr
    assert job.id in shared.stdout
    whoami = cli("whoami")
    assert "Identity  Bob Example <bob@example.com>" in whoami.stdout
    assert re.search(rf"^  {re.escape(org.slug)}\s", whoami.stdout, re.MULTILINE)

    sign_in_as(cli, browser, "carol", tmp_path / "carol", monkeypatch)
    outside = cli("jobs", "list")
    assert outside.exit_code == 1
    assert "404" in outside.stderr
    assert job.id not in outside.stdout + outside.stderr
