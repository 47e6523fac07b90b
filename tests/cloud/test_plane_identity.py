"""A plane is one identity: credentials follow its id, across ports, logouts and upgrades.

Everything runs through the real CLI or SDK against real planes: the embedded one
(``ARKOR_PORT`` names a port nothing listens on) and in-thread planes over the same or
another home.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arkor.cloud import (
    AnonymousCredentials,
    AuthError,
    CloudApiClient,
    HuggingfaceDatasetSource,
    JobConfig,
    JobCreate,
    credentials_path,
    ensure_credentials,
    read_credentials,
    read_state,
    write_credentials,
)
from arkor.sdk import open_session
from arkor.server import load_settings, run_in_thread
from tests.server.conftest import FAKE_WORKER
from tests.utils.cli import CliRunner
from tests.utils.plane import plane_settings, running_plane
from tests.utils.ports import unused_arkor_port
from tests.utils.projects import MINIMAL_TOML, minimal_project
from tests.utils.proxy import TcpProxy

__all__ = ["unused_arkor_port"]

pytestmark = pytest.mark.usefixtures("unused_arkor_port")

JOB = JobCreate(
    name="tiny",
    config=JobConfig(model="m", dataset_source=HuggingfaceDatasetSource(name="d"), max_steps=1),
)


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded planes run the protocol-speaking fake worker, not training."""
    monkeypatch.setenv("ARKOR_WORKER_COMMAND", shlex.join(FAKE_WORKER))
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)


def home() -> Path:
    return Path(os.environ["ARKOR_HOME"])


def plane_id(url: str) -> str:
    with CloudApiClient(url) as client:
        found = client.cli_config().plane_id
    assert found is not None
    return found


def listed_jobs(cli: CliRunner) -> list[str]:
    result = cli("jobs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    return [job["id"] for job in json.loads(result.stdout)["jobs"]]


def test_the_embedded_plane_and_serve_on_another_port_are_one_plane(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project started on the embedded plane is listed by a plane on another port, and back."""
    session = open_session()
    try:
        assert session.kind == "embedded"
        embedded_id = plane_id(session.url)
        first = session.client.create_job(session.scope, JOB)
    finally:
        session.close()

    with running_plane(home(), worker_command=FAKE_WORKER) as served:
        assert served.url != session.url
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", served.url)
        assert listed_jobs(cli) == [first.id]
        with CloudApiClient(served.url) as client:
            assert client.cli_config().plane_id == embedded_id
        monkeypatch.delenv("ARKOR_CLOUD_API_URL")

    again = open_session()  # and the reverse: a later embedded plane sees the same project
    try:
        second = again.client.create_job(again.scope, JOB)
    finally:
        again.close()
    assert set(listed_jobs(cli)) == {first.id, second.id}
    document = json.loads(credentials_path().read_text())
    assert document["planeId"] == embedded_id  # one record, keyed by the plane's id
    assert "planes" not in document


def test_cloud_url_in_the_config_is_used_by_every_command(
    project: Path, cli: CliRunner, tmp_path: Path
) -> None:
    """`[cloud] url` picks the plane for jobs, login and whoami, as it does for start."""
    with running_plane(tmp_path / "remote-home", worker_command=FAKE_WORKER) as remote:
        minimal_project(project, MINIMAL_TOML + f'\n[cloud]\nurl = "{remote.url}"\n')
        assert listed_jobs(cli) == []
        state = read_state()
        assert state is not None
        credentials = read_credentials(plane_id=plane_id(remote.url))
        assert isinstance(credentials, AnonymousCredentials)
        assert credentials.org_slug == state.org_slug
        assert credentials.arkor_cloud_api_url == remote.url
        whoami = cli("whoami")
        assert whoami.stdout.splitlines()[0] == f"Plane     {remote.url}"
        login = cli("login", "--yes")
        assert login.exit_code == 0, login.stderr
        assert f"Signed in anonymously to {remote.url}" in login.stdout
    assert not (home() / "local").exists()  # no local plane was ever started


def test_a_bad_cloud_url_in_the_config_is_a_located_error(project: Path, cli: CliRunner) -> None:
    minimal_project(project, MINIMAL_TOML + '\n[cloud]\nurl = "ftp://nowhere"\n')
    result = cli("jobs", "list")
    assert result.exit_code == 2
    assert "arkor.toml" in result.stderr and "cloud.url" in result.stderr
    assert "Traceback" not in result.stderr


def test_logout_and_login_on_the_local_plane_keep_the_projects(
    project: Path, cli: CliRunner
) -> None:
    assert listed_jobs(cli) == []  # the embedded plane: a project and a sign-in
    before = read_credentials()
    state = read_state()
    assert isinstance(before, AnonymousCredentials) and state is not None

    logout = cli("logout")
    assert logout.exit_code == 0, logout.stderr
    assert "stay yours" in logout.stdout
    assert read_credentials() is None

    login = cli("login", "--anonymous")
    assert login.exit_code == 0, login.stderr
    after = read_credentials()
    assert isinstance(after, AnonymousCredentials)
    assert (after.anonymous_id, after.org_slug) == (before.anonymous_id, before.org_slug)
    assert after.token != before.token
    assert listed_jobs(cli) == []  # the project is reachable again, no state error
    assert read_state() == state


def forget_the_owner() -> None:
    """What a database from before home owners looks like: no owner recorded."""
    from arkor.server._db import Database

    db = Database(load_settings().database_path)
    try:
        with db.transaction() as connection:
            connection.execute("DELETE FROM meta WHERE key = 'owner_user_id'")
    finally:
        db.close()


def write_legacy_file(credentials: AnonymousCredentials) -> None:
    """The single record an arkor from before plane ids wrote for the local plane."""
    credentials_path().write_text(
        json.dumps(
            {
                "mode": "anon",
                "token": credentials.token,
                "anonymousId": credentials.anonymous_id,
                "arkorCloudApiUrl": "http://127.0.0.1:8765",
                "orgSlug": credentials.org_slug,
            }
        )
    )


def test_a_logout_straight_after_upgrading_keeps_the_identity(
    project: Path, cli: CliRunner
) -> None:
    """The first command after the upgrade is logout: the old identity still comes back."""
    with running_plane(home(), worker_command=FAKE_WORKER) as old_plane:
        legacy = ensure_credentials(old_plane.url)
    assert isinstance(legacy, AnonymousCredentials)
    write_legacy_file(legacy)
    forget_the_owner()
    logout = cli("logout")
    assert logout.exit_code == 0, logout.stderr
    assert "stay yours" in logout.stdout
    assert cli("login").exit_code == 0
    again = read_credentials()
    assert isinstance(again, AnonymousCredentials)
    assert again.anonymous_id == legacy.anonymous_id


def test_a_sign_in_from_before_plane_ids_is_kept_and_owns_the_home(
    project: Path, cli: CliRunner
) -> None:
    """An old file keyed by URL: its identity carries on and survives logout and login."""
    with running_plane(home(), worker_command=FAKE_WORKER) as old_plane:
        legacy = ensure_credentials(old_plane.url)  # stands for a token an older arkor stored
    assert isinstance(legacy, AnonymousCredentials)
    write_legacy_file(legacy)
    forget_the_owner()  # an older plane had none; the sign-in above made one

    whoami = cli("whoami", "--json")
    assert whoami.exit_code == 0, whoami.stderr
    assert json.loads(whoami.stdout)["user"]["anonymousId"] == legacy.anonymous_id
    pinned = read_credentials()
    assert pinned is not None and pinned.plane_id == json.loads(whoami.stdout)["planeId"]

    assert cli("logout").exit_code == 0
    assert cli("login").exit_code == 0
    again = read_credentials()
    assert isinstance(again, AnonymousCredentials)
    assert again.anonymous_id == legacy.anonymous_id


def test_the_token_never_reaches_another_plane_at_the_same_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plane A is replaced by plane B (another home) at the same address: B gets a new identity."""
    first = run_in_thread(plane_settings(tmp_path / "a", worker_command=FAKE_WORKER))
    port = int(first.url.rsplit(":", 1)[1])
    with TcpProxy(f"127.0.0.1:{port}") as recorder:
        try:
            on_a = ensure_credentials(recorder.url)
        finally:
            first.stop()
        seen_before = len(recorder.received)
        with run_in_thread(
            plane_settings(tmp_path / "b", worker_command=FAKE_WORKER), port=port
        ) as second:
            assert second.url == first.url
            on_b = ensure_credentials(recorder.url)
            with CloudApiClient.from_credentials(on_b) as client:
                me = client.me()
        sent_to_b = bytes(recorder.received[seen_before:])

    assert isinstance(on_a, AnonymousCredentials) and isinstance(on_b, AnonymousCredentials)
    assert on_a.plane_id != on_b.plane_id
    assert on_a.anonymous_id != on_b.anonymous_id
    assert me.user.anonymous_id == on_b.anonymous_id
    assert on_a.token.encode() not in sent_to_b
    assert f"Bearer {on_b.token}".encode() in sent_to_b
    assert on_a.plane_id is not None
    assert read_credentials(plane_id=on_a.plane_id) == on_a  # A's identity is kept for A


def test_the_home_key_is_never_sent_to_another_plane(tmp_path: Path) -> None:
    """This home's key goes only to this home's plane, even when another plane asks."""
    with running_plane(home(), worker_command=FAKE_WORKER) as own:
        plane_id(own.url)  # writes the home key
    key = json.loads((home() / "local" / "home-key.json").read_text())["key"]
    with (
        running_plane(tmp_path / "other", worker_command=FAKE_WORKER) as other,
        TcpProxy(other.url.removeprefix("http://")) as recorder,
    ):
        ensure_credentials(recorder.url)
    assert key.encode() not in bytes(recorder.received)
    assert b"homeKey" not in bytes(recorder.received)


def test_a_state_of_another_org_says_how_to_get_out(project: Path, cli: CliRunner) -> None:
    assert listed_jobs(cli) == []
    state_file = project / ".arkor" / "state.json"
    document = json.loads(state_file.read_text())
    document["orgSlug"] = "anon-somebody-else"
    state_file.write_text(json.dumps(document))
    result = cli("jobs", "list")
    assert result.exit_code == 1
    message = result.stderr
    assert "sign in as the identity" not in message.lower()
    assert "`anon-somebody-else`" in message and "is not a member of" in message
    assert "[cloud] url" in message and f"delete {state_file}" in message


def test_remote_logout_of_an_identity_with_projects_asks_first(
    project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "remote-home", worker_command=FAKE_WORKER) as remote:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", remote.url)
        assert listed_jobs(cli) == []  # signed in, with a project
        signed_in = read_credentials()
        state = read_state()
        assert signed_in is not None and state is not None

        refused = cli("logout")
        assert refused.exit_code == 2
        assert f"{state.org_slug}/{state.project_slug}" in refused.stderr
        assert "--yes" in refused.stderr and "Nothing was changed" in refused.stderr
        assert read_credentials() == signed_in

        relogin = cli("login")
        assert relogin.exit_code == 2  # replacing it would strand the project too
        assert read_credentials() == signed_in

        done = cli("logout", "--yes")
        assert done.exit_code == 0, done.stderr
        assert f"Signed out of {remote.url}" in done.stdout
        assert "its token revoked on the plane" in done.stdout
        assert not credentials_path().exists()
        with (  # a copy of the forgotten token is no use either
            CloudApiClient(remote.url, signed_in.bearer_token) as client,
            pytest.raises(AuthError),
        ):
            client.me()


def test_remote_logout_without_projects_needs_no_confirmation(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "remote-home", worker_command=FAKE_WORKER) as remote:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", remote.url)
        assert cli("login").exit_code == 0
        write_credentials(  # a second plane's record stays
            AnonymousCredentials(
                token="t", anonymous_id="a", arkor_cloud_api_url="http://10.9.9.9:1", org_slug="o"
            ),
            make_default=False,
        )
        result = cli("logout")
    assert result.exit_code == 0, result.stderr
    assert read_credentials("http://10.9.9.9:1") is not None
    assert read_credentials(remote.url) is None


def test_whoami_lists_nothing_for_a_plane_that_is_not_signed_in(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "remote-home", worker_command=FAKE_WORKER) as remote:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", remote.url)
        result = cli("whoami", "--json")
    assert json.loads(result.stdout) == {"url": remote.url, "signedIn": False}


def test_tokens_are_listed_and_revoked_from_the_cli(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(home(), worker_command=FAKE_WORKER) as own:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", own.url)
        assert cli("login").exit_code == 0
        older = read_credentials()
        assert cli("login").exit_code == 0  # this home's plane: the same identity, a new token
        listed = cli("tokens", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
        tokens = json.loads(listed.stdout)["tokens"]
        assert [t["current"] for t in tokens] == [False, True]
        assert cli("tokens", "list").stdout.splitlines()[1].startswith(f"* {tokens[1]['id']}")

        own_token = cli("tokens", "revoke", tokens[1]["id"])
        assert own_token.exit_code == 2
        assert "arkor logout" in own_token.stderr

        revoked = cli("tokens", "revoke", tokens[0]["id"])
        assert revoked.exit_code == 0, revoked.stderr
        assert older is not None
        with CloudApiClient(own.url, older.bearer_token) as client, pytest.raises(AuthError):
            client.me()
        assert [t["id"] for t in json.loads(cli("tokens", "list", "--json").stdout)["tokens"]] == [
            tokens[1]["id"]
        ]
        unknown = cli("tokens", "revoke", "tok_nothing")
        assert unknown.exit_code == 1
        assert "not found" in unknown.stderr


def test_on_a_terminal_logout_asks_and_no_keeps_the_identity(
    project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt itself, through a pseudo-terminal: answering no changes nothing, exit 1."""
    with running_plane(tmp_path / "remote-home", worker_command=FAKE_WORKER) as remote:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", remote.url)
        assert listed_jobs(cli) == []
        signed_in = read_credentials()
        env = {key: value for key, value in os.environ.items() if key != "CI"}
        primary, secondary = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "arkor", "logout"],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            cwd=project,
            env=env,
        )
        os.close(secondary)
        output = b""
        deadline = time.monotonic() + 60
        while b"Go ahead?" not in output and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                output += os.read(primary, 4096)
        os.write(primary, b"n\n")
        code = process.wait(timeout=60)
        while select.select([primary], [], [], 0.2)[0]:
            try:
                output += os.read(primary, 4096)
            except OSError:
                break
        os.close(primary)
    text = output.decode()
    assert "reaches 1 project(s)" in text and "Go ahead? [y/N]" in text
    assert code == 1
    assert "Still signed in" in text
    assert read_credentials() == signed_in
