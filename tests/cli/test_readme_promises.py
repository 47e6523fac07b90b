"""What the README promises about the commands, each checked against a real plane or process.

The plane runs the fake worker: a job's name says what its worker does (``events:2``
completes, ``exit:3`` dies, ``until-cancel`` runs until cancelled, ``sleep`` runs on),
so these tests take milliseconds of training.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from arkor.cloud import read_credentials, read_state
from arkor.sdk import run_trainer
from arkor.server import RunningPlane
from tests.server.conftest import FAKE_WORKER
from tests.utils.cli import CliRunner
from tests.utils.plane import client_headers, running_plane
from tests.utils.ports import free_port
from tests.utils.process import OutputLines
from tests.utils.projects import MINIMAL_TOML, callbacks_project, minimal_project, write

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_plane(tmp_path: Path) -> Iterator[RunningPlane]:
    """A plane of its own whose jobs run the fake worker."""
    with running_plane(
        tmp_path / "plane-home", worker_command=FAKE_WORKER, max_jobs=4, cancel_grace=1.0
    ) as plane:
        yield plane


@pytest.fixture
def on_fake_plane(fake_plane: RunningPlane, monkeypatch: pytest.MonkeyPatch) -> RunningPlane:
    """``ARKOR_CLOUD_API_URL`` names the fake plane, for this process and its children."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", fake_plane.url)
    return fake_plane


def project_named(project: Path, name: str, extra: str = "") -> None:
    """A minimal project whose job is called ``name`` (the fake worker's instruction)."""
    minimal_project(project, MINIMAL_TOML.replace('name = "demo"', f'name = "{name}"') + extra)


def show(cli: CliRunner, job_id: str) -> dict[str, Any]:
    shown = cli("jobs", "show", job_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    job: dict[str, Any] = json.loads(shown.stdout)["job"]
    return job


def job_id_in(text: str) -> str:
    found = re.search(r"\bjob_[0-9a-f]+\b", text)
    assert found is not None, text
    return found[0]


def arkor_process(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "arkor", *args],
        cwd=cwd,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- arkor start ---------------------------------------------------------------------------


def test_env_secrets_are_resolved_at_start_not_frozen_at_build(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        project,
        "arkor.toml",
        """\
        [trainer]
        name = "events:1"
        model = "HuggingFaceTB/SmolLM2-135M-Instruct"

        [trainer.dataset]
        type = "blob"
        url = "https://data.example/train.jsonl"
        token = "${env:BLOB_TOKEN}"
        """,
    )
    monkeypatch.setenv("BLOB_TOKEN", "at-build")
    assert cli("build").exit_code == 0
    manifest = (project / ".arkor" / "build" / "manifest.json").read_text(encoding="utf-8")
    assert "${env:BLOB_TOKEN}" in manifest and "at-build" not in manifest

    monkeypatch.delenv("BLOB_TOKEN")
    refused = cli("start")
    assert refused.exit_code == 2
    assert "BLOB_TOKEN" in refused.stderr and "export BLOB_TOKEN=" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads(cli("jobs", "list", "--json").stdout)["jobs"] == [], "nothing submitted"

    monkeypatch.setenv("BLOB_TOKEN", "at-start")
    started = cli("start")
    assert started.exit_code == 0, started.stderr
    job_id = job_id_in(started.stdout)
    assert show(cli, job_id)["config"]["datasetSource"]["token"] == "***", "never shown"
    with sqlite3.connect(on_fake_plane.settings.database_path) as db:
        (stored,) = db.execute("SELECT config FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert json.loads(stored)["datasetSource"]["token"] == "at-start", "kept for the worker"


def test_cloud_url_in_the_config_chooses_the_plane(
    project: Path, cli: CliRunner, fake_plane: RunningPlane
) -> None:
    project_named(project, "events:2", f'\n[cloud]\nurl = "{fake_plane.url}"\n')
    assert cli("build").exit_code == 0

    result = cli("start")

    assert result.exit_code == 0, result.stderr
    assert f"Using the control plane at {fake_plane.url}." in result.stdout
    with sqlite3.connect(fake_plane.settings.database_path) as db:
        rows = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id_in(result.stdout),))
        assert rows.fetchall() == [("completed",)]


@pytest.fixture
def served_on_arkor_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, OutputLines]]:
    """``ARKOR_PORT=<a free port> arkor serve`` in its own process, on this test's home, its
    jobs run by the fake worker; ``ARKOR_PORT`` stays set, as for a user who exported it.
    Yields the plane's URL and its output."""
    port = free_port()
    monkeypatch.setenv("ARKOR_PORT", str(port))
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "arkor", "serve"],
        env={**os.environ, "ARKOR_WORKER_COMMAND": shlex.join(FAKE_WORKER)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = OutputLines(process.stdout)
    try:
        output.wait_for(lambda line: url in line, timeout=60)  # listening: requests wait
        assert httpx.get(f"{url}/v1/auth/cli/config", timeout=60).status_code == 200
        yield url, output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_running_arkor_serve_on_arkor_port_runs_the_job(
    project: Path, cli: CliRunner, served_on_arkor_port: tuple[str, OutputLines]
) -> None:
    url, served = served_on_arkor_port
    project_named(project, "events:2")
    assert cli("build").exit_code == 0

    result = cli("start")

    assert result.exit_code == 0, result.stderr
    assert f"Using the local plane at {url} (`arkor serve`)." in result.stdout
    job_id = job_id_in(result.stdout)
    served.wait_for(lambda line: f"Job {job_id} started in worker process" in line, timeout=30)
    credentials, scope = read_credentials(), read_state()
    assert credentials is not None and scope is not None
    listed = httpx.get(
        f"{url}/v1/jobs",
        params={"orgSlug": scope.org_slug, "projectSlug": scope.project_slug},
        headers=client_headers(credentials.bearer_token),
    )
    assert [(job["id"], job["status"]) for job in listed.json()["jobs"]] == [(job_id, "completed")]


@pytest.mark.parametrize("value", ["abc", "-1", "70000"])
def test_an_arkor_port_that_is_no_port_is_refused_by_name(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    monkeypatch.setenv("ARKOR_PORT", value)
    minimal_project(project)

    result = cli("jobs", "list")

    assert result.exit_code == 2
    assert f"ARKOR_PORT={value} cannot be used" in result.stderr
    assert "a whole number from 0 to 65535 (e.g. ARKOR_PORT=9000)" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_exits_1_when_the_job_fails(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "exit:3")
    assert cli("build").exit_code == 0

    result = cli("start")

    assert result.exit_code == 1, result.stderr
    assert re.search(r"✗ Job job_[0-9a-f]+: failed", result.stdout), result.stdout
    assert "  error     " in result.stdout
    assert show(cli, job_id_in(result.stdout))["status"] == "failed"


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_a_failed_job_s_error_is_printed_once(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane, json_output: bool
) -> None:
    project_named(project, "exit:3")
    assert cli("build").exit_code == 0

    result = cli("start", *(["--json"] if json_output else []))

    assert result.exit_code == 1, result.stderr
    error = show(cli, job_id_in(result.stdout + result.stderr))["error"]
    assert error and "code 3" in error
    if json_output:
        assert error not in result.stderr
        *events, summary = [json.loads(line) for line in result.stdout.splitlines()]
        assert [event["error"] for event in events if event["type"] == "training.failed"] == [error]
        assert summary["error"] == error
    else:
        assert (result.stdout + result.stderr).count(error) == 1, result.stdout
        assert f"  error     {error}" in result.stdout
        assert "training failed\n" in result.stdout


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_start_exits_1_when_the_job_is_cancelled(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane, json_output: bool
) -> None:
    project_named(project, "until-cancel")
    assert cli("build").exit_code == 0
    process = arkor_process("start", *(["--json"] if json_output else []), cwd=project)
    assert process.stdout is not None and process.stderr is not None
    output, errors = OutputLines(process.stdout), OutputLines(process.stderr)
    try:
        if json_output:
            output.wait_for(lambda line: '"training.started"' in line, timeout=60)
            submitted = errors.wait_for(lambda line: "submitted" in line, timeout=5)
        else:
            submitted = output.wait_for(lambda line: "submitted" in line, timeout=60)
            output.wait_for(lambda line: line.startswith("training started"), timeout=60)
        assert cli("jobs", "cancel", job_id_in(submitted)).exit_code == 0
    finally:
        code = process.wait(timeout=60)
    rest = output.rest(timeout=10)
    assert code == 1, errors.rest(timeout=10)
    if json_output:
        summary = json.loads(rest.splitlines()[-1])
        assert (summary["status"], summary["job"]["status"]) == ("cancelled", "cancelled")
    else:
        assert "training cancelled" in rest and ": cancelled" in rest


def test_ctrl_c_against_a_running_plane_only_stops_waiting(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "sleep")
    assert cli("build").exit_code == 0
    process = arkor_process("start", cwd=project)
    assert process.stdout is not None and process.stderr is not None
    output, errors = OutputLines(process.stdout), OutputLines(process.stderr)
    try:
        submitted = output.wait_for(lambda line: "submitted" in line, timeout=60)
        output.wait_for(lambda line: line.startswith("training started"), timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    stderr = errors.rest(timeout=10)
    job_id = job_id_in(submitted)
    assert code == 130, stderr
    assert f"Stopped waiting; job {job_id} goes on." in stderr
    assert f"arkor jobs logs {job_id} --follow" in stderr
    assert f"arkor jobs cancel {job_id}" in stderr
    assert "Traceback" not in stderr
    assert show(cli, job_id)["status"] == "running", "the job goes on without the command"
    assert cli("jobs", "cancel", job_id).exit_code == 0


def test_start_rebuild_runs_the_edited_config(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "events:2")
    assert cli("build").exit_code == 0
    config = project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("max_steps = 10", "max_steps = 12"),
        encoding="utf-8",
    )
    assert cli("start").exit_code == 2, "a stale manifest is refused without --rebuild"

    result = cli("start", "--rebuild")

    assert result.exit_code == 0, result.stderr
    assert "The manifest is out of date: rebuilding it." in result.stdout
    manifest = json.loads((project / ".arkor" / "build" / "manifest.json").read_text())
    assert manifest["job"]["config"]["maxSteps"] == 12
    assert show(cli, job_id_in(result.stdout))["config"]["maxSteps"] == 12


def test_start_detach_json_prints_one_line(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "events:1")
    assert cli("build").exit_code == 0

    result = cli("start", "--detach", "--json")

    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    submitted = json.loads(line)
    assert submitted["plane"] == on_fake_plane.url
    assert submitted["job"]["name"] == "events:1"
    assert f"Job {submitted['job']['id']} submitted" in result.stderr


def test_callbacks_of_one_module_share_its_state(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    callbacks = (
        '\n[trainer.callbacks]\non_log = "demo_pkg.callbacks:on_log"\n'
        'on_completed = "demo_pkg.callbacks:on_completed"\n'
    )
    project_named(project, "events:3", callbacks)
    callbacks_project(
        project,
        """\
        seen = []


        def on_log(ctx):
            seen.append(ctx.step)


        def on_completed(ctx):
            print(f"the same module saw steps {seen}")
        """,
    )
    assert cli("build").exit_code == 0

    result = cli("start")

    assert result.exit_code == 0, result.stderr
    assert "the same module saw steps [1, 2, 3]" in result.stdout


# --- arkor schema --------------------------------------------------------------------------


@pytest.fixture
def installed_copy(tmp_path: Path) -> Path:
    """A copy of the package and its schema, laid out as a checkout, to let --write write."""
    root = tmp_path / "install"
    shutil.copytree(
        REPO_ROOT / "arkor", root / "arkor", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "schemas", root / "schemas")
    return root


def schema_command(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arkor", "schema", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_schema_check_fails_on_a_stale_file_and_write_fixes_it(installed_copy: Path) -> None:
    shipped = installed_copy / "schemas" / "arkor.schema.json"
    current = shipped.read_text(encoding="utf-8")
    stale = current.replace('"description": "The run\'s name', '"description": "An old name', 1)
    assert stale != current
    shipped.write_text(stale, encoding="utf-8")

    checked = schema_command(installed_copy, "--check")
    assert checked.returncode == 1
    assert f"{shipped} is stale" in checked.stderr and "arkor schema --write" in checked.stderr
    assert "-  " in checked.stderr and "An old name" in checked.stderr, "the diff is shown"

    written = schema_command(installed_copy, "--write")
    assert written.returncode == 0, written.stderr
    assert f"Wrote {shipped}" in written.stdout
    assert shipped.read_text(encoding="utf-8") == current
    assert schema_command(installed_copy, "--check").returncode == 0
    again = schema_command(installed_copy, "--write")
    assert f"{shipped} is up to date" in again.stdout


# --- arkor validate FILES… and the pre-commit hook -----------------------------------------


BAD_TOML = MINIMAL_TOML.replace("max_steps = 10", "max_steps = -1")


@pytest.fixture
def configs(project: Path) -> Path:
    """A valid arkor.toml, an invalid configs/arkor.toml, and a pyproject.toml without Arkor."""
    minimal_project(project)
    write(project, "configs/arkor.toml", BAD_TOML)
    write(project, "configs/data/train.jsonl", (project / "data" / "train.jsonl").read_text())
    write(project, "pyproject.toml", '[project]\nname = "demo"\n')
    write(project, "notes.toml", "[trainer]\nname = 5\n")
    return project


def test_validate_checks_each_file_given(configs: Path, cli: CliRunner) -> None:
    good = cli("validate", "arkor.toml", "pyproject.toml")
    assert good.exit_code == 0, good.stderr
    assert "arkor.toml is valid" in good.stdout

    mixed = cli("validate", "arkor.toml", "configs/arkor.toml", "pyproject.toml")
    assert mixed.exit_code == 2
    assert "arkor.toml is valid" in mixed.stdout
    assert re.search(r"configs/arkor\.toml:4:\d+", mixed.stderr), mixed.stderr
    assert "max_steps" in mixed.stderr

    report = json.loads(
        cli("validate", "arkor.toml", "configs/arkor.toml", "--format", "json").stdout
    )
    assert report["valid"] is False
    assert [Path(path).name for path in report["checked"]] == ["arkor.toml"]
    assert {error["file"].endswith("configs/arkor.toml") for error in report["errors"]} == {True}


def test_the_pre_commit_hook_runs_validate_on_the_config_files(configs: Path) -> None:
    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "arkor-validate" and hook["language"] == "python"
    staged = [
        "arkor.toml",
        "configs/arkor.toml",
        "pyproject.toml",
        "notes.toml",
        "data/train.jsonl",
    ]
    selected = [name for name in staged if re.search(hook["files"], name)]
    assert selected == ["arkor.toml", "configs/arkor.toml", "pyproject.toml"]
    command, *entry_args = shlex.split(hook["entry"])
    executable = Path(sys.executable).parent / command  # the console script pip installed

    def hook_run(files: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), *entry_args, *files],
            cwd=configs,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    failing = hook_run(selected)
    assert failing.returncode == 2, failing.stdout + failing.stderr
    assert re.search(r"configs/arkor\.toml:4:\d+", failing.stderr), failing.stderr
    passing = hook_run([name for name in selected if name != "configs/arkor.toml"])
    assert passing.returncode == 0, passing.stderr
    assert "arkor.toml is valid" in passing.stdout


# --- run_trainer ---------------------------------------------------------------------------


def test_run_trainer_runs_a_manifest(
    project: Path, cli: CliRunner, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "events:2")
    assert cli("build").exit_code == 0

    result = run_trainer(project / ".arkor" / "build" / "manifest.json")

    assert (result.status, result.job.name, result.metrics) == (
        "completed",
        "events:2",
        {"step": 2},
    )


def test_run_trainer_builds_and_runs_a_config_file(
    project: Path, on_fake_plane: RunningPlane
) -> None:
    project_named(project, "events:3")
    config = project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("max_steps = 10", "max_steps = 7"),
        encoding="utf-8",
    )

    result = run_trainer(config)

    assert (result.status, result.job.name, result.metrics) == (
        "completed",
        "events:3",
        {"step": 3},
    )
    assert result.job.config.max_steps == 7
    built = json.loads((project / ".arkor" / "build" / "manifest.json").read_text())
    assert built["job"]["config"]["maxSteps"] == 7


def test_run_trainer_finds_the_trainer_export_of_a_module(
    project: Path, on_fake_plane: RunningPlane
) -> None:
    minimal_project(project)
    write(
        project,
        "entry.py",
        """\
        from arkor.sdk import create_trainer

        trainer = create_trainer(
            name="events:1",
            model="HuggingFaceTB/SmolLM2-135M-Instruct",
            dataset={"type": "file", "path": "data/train.jsonl"},
            max_steps=1,
        )
        """,
    )

    result = run_trainer(project / "entry.py")

    assert (result.status, result.job.name, result.metrics) == (
        "completed",
        "events:1",
        {"step": 1},
    )
