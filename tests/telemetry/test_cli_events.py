"""What the CLI records for a command, and when it records and sends nothing.

A detached sender process sends after the command has returned: tests wait for it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from arkor import telemetry
from arkor._home import arkor_home
from arkor._version import __version__
from tests.telemetry.conftest import Capture, capture_server, queued, wait_until
from tests.utils.cli import CliRunner, run_process
from tests.utils.ports import free_port
from tests.utils.projects import MINIMAL_TOML, minimal_project

ID_FILE = "telemetry-id"
QUEUE_FILE = "telemetry-queue.jsonl"
LOCK_FILE = "telemetry-queue.lock"


def install_id() -> str:
    return (arkor_home() / ID_FILE).read_text().strip()


def test_a_succeeding_command_sends_its_name_flags_and_exit_code(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    minimal_project(project)
    result = cli("validate", "--set", "trainer.max_steps=7", "--format", "json")
    assert result.exit_code == 0, result.stderr
    [event] = posthog.received(1)
    assert posthog.requests[0][0] == "/batch/"
    assert event["event"] == "command"
    assert event["distinct_id"] == install_id()
    properties = event["properties"]
    assert properties["command"] == "validate"
    assert properties["flags"] == ["--format", "--set"]
    assert properties["exit_code"] == 0
    assert isinstance(properties["duration_ms"], int) and properties["duration_ms"] >= 0
    assert properties["arkor_version"] == __version__
    assert properties["ci"] is True
    assert properties["os"] and properties["python_version"] and "os_release" in properties


@pytest.mark.parametrize(
    ("args", "exit_code", "command", "flags"),
    [
        (["validate", "--set", "trainer.max_steps=0"], 2, "validate", ["--set"]),
        (["jobs", "list", "--token=s3cret-value", "--json"], 2, "jobs list", ["--json"]),
        (["frobnicate", "--json"], 2, "arkor", []),
    ],
    ids=["config-error", "unknown-flag", "unknown-command"],
)
def test_a_failing_command_sends_its_exit_code_and_only_declared_flag_names(
    project: Path,
    cli: CliRunner,
    posthog: Capture,
    args: list[str],
    exit_code: int,
    command: str,
    flags: list[str],
) -> None:
    minimal_project(project, MINIMAL_TOML.replace("max_steps = 10", "max_steps = 1"))
    result = cli(*args)
    assert result.exit_code == exit_code
    [event] = posthog.received(1)
    assert event["properties"]["command"] == command
    assert event["properties"]["exit_code"] == exit_code
    assert event["properties"]["flags"] == flags


def test_nothing_sent_names_a_value_a_path_or_the_model(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    """Everything given on the command line and the project's whereabouts stay here."""
    minimal_project(project)
    values = ["trainer.max_steps=7", "trainer.name=secret-run"]
    cli("validate", "--set", values[0], "--set", values[1], "-c", "arkor.toml")
    cli("build", f"--set={values[0]}", "--json")
    cli("jobs", "list", "--token=s3cret-value")
    cli("init", "-y", "--skip-git", "-nmy-private-name", str(project / "sub"))
    events = posthog.received(4)
    sent = posthog.raw.decode()
    assert len(events) == 4  # one sender each: they may arrive in any order
    assert sorted(event["properties"]["flags"] for event in events) == [
        [],
        ["--config", "--set"],
        ["--json", "--set"],
        ["--name", "--skip-git", "--yes"],
    ]
    for secret in [
        *values,
        "s3cret-value",
        "secret-run",
        "my-private-name",
        "max_steps",
        "SmolLM2",
        str(project),
        project.name,
        str(arkor_home()),
        "train.jsonl",
    ]:
        assert secret not in sent, secret


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DO_NOT_TRACK", "1"),
        ("ARKOR_TELEMETRY_DISABLED", "1"),
        ("ARKOR_TELEMETRY_DISABLED", "true"),
        ("DO_NOT_TRACK", "yes"),
    ],
)
def test_an_opt_out_records_and_sends_nothing_and_makes_no_id(
    project: Path,
    cli: CliRunner,
    posthog: Capture,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    minimal_project(project)
    monkeypatch.setenv(name, value)
    assert cli("validate").exit_code == 0
    assert cli("validate", "--set", "trainer.max_steps=0").exit_code == 2
    assert posthog.requests == []
    for name in (ID_FILE, QUEUE_FILE, LOCK_FILE):
        assert not (arkor_home() / name).exists(), name


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["validate", "--help"], ["--version"], []])
def test_help_and_version_record_nothing(cli: CliRunner, posthog: Capture, args: list[str]) -> None:
    cli(*args)
    assert posthog.requests == []
    assert not arkor_home().exists() or not (arkor_home() / ID_FILE).exists()


def test_the_install_id_is_made_once_private_and_reused(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    minimal_project(project)
    first = cli("validate")
    path = arkor_home() / ID_FILE
    made = path.read_text().strip()
    assert uuid.UUID(made).version == 4
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "anonymous usage" in first.stderr and "DO_NOT_TRACK=1" in first.stderr
    assert len(first.stderr.strip().splitlines()) == 1
    second = cli("validate")
    assert "anonymous usage" not in second.stderr
    assert path.read_text().strip() == made
    assert [event["distinct_id"] for event in posthog.received(2)] == [made, made]


def test_an_id_file_that_holds_no_id_is_replaced_quietly(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    minimal_project(project)
    arkor_home().mkdir(parents=True)
    (arkor_home() / ID_FILE).write_text("not an id\n")
    result = cli("validate")
    assert "anonymous usage" not in result.stderr
    [event] = posthog.received(1)
    assert event["distinct_id"] == install_id() != "not an id"


def test_a_hanging_endpoint_holds_up_no_command_and_its_events_come_back_to_the_queue(
    project: Path, cli: CliRunner, hanging_posthog: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimal_project(project)
    monkeypatch.setenv("ARKOR_TELEMETRY_TIMEOUT", "2")
    result = cli("validate")
    assert result.exit_code == 0
    # the command has returned; its sender now reaches the endpoint, which holds the request
    wait_until(hanging_posthog.holding.is_set, "the sender's request")
    [held] = hanging_posthog.events()
    assert queued() == []  # the sender still waits: nothing came back yet
    wait_until(lambda: len(queued()) == 1, "the sender to give up and queue the event")
    assert not hanging_posthog.release.is_set()  # given up on while the server still holds it
    assert queued()[0]["uuid"] == held["uuid"]  # the same event, resent later (stored once)
    assert stat.S_IMODE((arkor_home() / QUEUE_FILE).stat().st_mode) == 0o600


def test_debug_reports_the_senders_failures_and_the_command_is_unchanged(
    project: Path, telemetry_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimal_project(project)
    monkeypatch.setenv("ARKOR_TELEMETRY_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ARKOR_TELEMETRY_KEY", "phc_test")
    monkeypatch.setenv("ARKOR_TELEMETRY_DEBUG", "1")
    result = run_process("validate", cwd=project)  # returns once the sender, on its stderr, ends
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("arkor telemetry:")]
    assert lines and all(line.startswith("arkor telemetry: capture failed:") for line in lines)
    assert len(queued()) == 1
    monkeypatch.delenv("ARKOR_TELEMETRY_DEBUG")
    quiet = run_process("validate", cwd=project)
    assert quiet.exit_code == 0 and "arkor telemetry" not in quiet.stderr
    wait_until(lambda: len(queued()) == 2, "the quiet sender to queue both events")


@pytest.mark.parametrize("answering", [True, False], ids=["answering", "refusing"])
def test_commands_racing_each_other_and_their_senders_lose_and_duplicate_no_event(
    project: Path,
    cli: CliRunner,
    telemetry_on: None,
    monkeypatch: pytest.MonkeyPatch,
    answering: bool,
) -> None:
    """Commands drain the queue while other commands' senders put events back in it."""
    minimal_project(project)
    for _ in range(3):
        assert cli("validate").exit_code == 0  # nowhere to send: a backlog of three
    backlog = {event["uuid"] for event in queued()}
    assert len(backlog) == 3
    with capture_server() as capture:
        monkeypatch.setenv(
            "ARKOR_TELEMETRY_HOST", capture.url if answering else f"http://127.0.0.1:{free_port()}"
        )
        monkeypatch.setenv("ARKOR_TELEMETRY_KEY", "phc_test")
        monkeypatch.setenv("ARKOR_TELEMETRY_DEBUG", "1")  # the senders keep stderr open
        commands = [
            subprocess.Popen(
                [sys.executable, "-m", "arkor", "validate"],
                cwd=project,
                env=dict(os.environ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        for command in commands:  # stderr ends when the command and its sender both have
            command.communicate(timeout=120)
            assert command.returncode == 0
        if answering:
            uuids = [event["uuid"] for event in capture.events()]
            assert queued() == []
        else:
            uuids = [event["uuid"] for event in queued()]
            assert capture.requests == []
    assert len(uuids) == 7 and max(Counter(uuids).values()) == 1, Counter(uuids)
    assert backlog <= set(uuids)


def test_without_a_plane_or_host_the_event_waits_in_a_private_capped_queue(
    project: Path, cli: CliRunner, telemetry_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimal_project(project)
    monkeypatch.setattr("arkor.telemetry._files.QUEUE_LIMIT", 3)
    for _ in range(5):
        assert cli("validate").exit_code == 0
    path = arkor_home() / QUEUE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().splitlines()) == 3
    assert telemetry.noted_plane() is None
