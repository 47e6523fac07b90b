"""What the CLI records for a command, and when it records and sends nothing."""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path

import pytest

from arkor import telemetry
from arkor._home import arkor_home
from arkor._version import __version__
from tests.telemetry.conftest import Capture
from tests.utils.cli import CliRunner
from tests.utils.ports import free_port
from tests.utils.projects import MINIMAL_TOML, minimal_project

ID_FILE = "telemetry-id"
QUEUE_FILE = "telemetry-queue.jsonl"


def install_id() -> str:
    return (arkor_home() / ID_FILE).read_text().strip()


def test_a_succeeding_command_sends_its_name_flags_and_exit_code(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    minimal_project(project)
    result = cli("validate", "--set", "trainer.max_steps=7", "--format", "json")
    assert result.exit_code == 0, result.stderr
    [event] = posthog.events()
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
    [event] = posthog.events()
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
    sent = posthog.raw.decode()
    assert len(posthog.events()) == 4
    assert [event["properties"]["flags"] for event in posthog.events()] == [
        ["--config", "--set"],
        ["--json", "--set"],
        [],
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
    assert not (arkor_home() / ID_FILE).exists()
    assert not (arkor_home() / QUEUE_FILE).exists()


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
    assert [event["distinct_id"] for event in posthog.events()] == [made, made]


def test_an_id_file_that_holds_no_id_is_replaced_quietly(
    project: Path, cli: CliRunner, posthog: Capture
) -> None:
    minimal_project(project)
    arkor_home().mkdir(parents=True)
    (arkor_home() / ID_FILE).write_text("not an id\n")
    result = cli("validate")
    assert "anonymous usage" not in result.stderr
    [event] = posthog.events()
    assert event["distinct_id"] == install_id() != "not an id"


def test_a_hanging_endpoint_costs_the_exit_only_the_flush_deadline(
    project: Path, cli: CliRunner, hanging_posthog: Capture
) -> None:
    minimal_project(project)
    cli("validate")  # posthog imported: what follows times the flush, not a first import
    hanging_posthog.release.set()
    hanging_posthog.holding.clear()
    hanging_posthog.release.clear()
    started = time.monotonic()
    result = cli("validate")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0
    assert hanging_posthog.holding.is_set() and not hanging_posthog.release.is_set()
    # the request timeout is 2 s: returning well before it is the flush deadline at work
    assert elapsed < 1.5, elapsed
    queued = (arkor_home() / QUEUE_FILE).read_text().splitlines()
    assert len(queued) >= 1  # not taken: kept for the next command


def test_debug_reports_the_modules_own_failures_and_the_command_is_unchanged(
    project: Path, cli: CliRunner, telemetry_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimal_project(project)
    monkeypatch.setenv("ARKOR_TELEMETRY_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ARKOR_TELEMETRY_KEY", "phc_test")
    monkeypatch.setenv("ARKOR_TELEMETRY_DEBUG", "1")
    result = cli("validate")
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("arkor telemetry:")]
    assert lines and all(line.startswith("arkor telemetry: capture failed:") for line in lines)
    assert len((arkor_home() / QUEUE_FILE).read_text().splitlines()) == 1
    monkeypatch.delenv("ARKOR_TELEMETRY_DEBUG")
    quiet = cli("validate")
    assert "arkor telemetry" not in quiet.stderr


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
