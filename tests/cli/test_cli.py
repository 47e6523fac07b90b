"""The ``arkor`` command line: flags, help, exit codes, error output, validate, schema, imports."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from arkor._version import __version__
from tests.utils.cli import CliRunner, run_process
from tests.utils.projects import MINIMAL_TOML, callbacks_project, minimal_project, write

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("init", "validate", "build", "schema", "start", "serve", "dev", "orgs", "login", "eval")
HEAVY = ("pydantic", "jsonschema", "httpx", "yaml", "torch", "transformers", "posthog")
ANSI = "\x1b["

PROBE = """\
import json
import sys
from arkor.cli.main import run
try:
    run({args!r})
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def line_of(text: str, start: str) -> int:
    """The 1-based number of the first line of ``text`` that starts with ``start``."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if line.startswith(start))


def heavy_modules_after(args: list[str], cwd: Path) -> list[str]:
    """Run ``arkor ARGS`` in a fresh interpreter and list the heavy modules it imported."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    found: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return found


# --- version and help --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["--debug", "--version"]])
def test_version_flag_prints_the_version(cli: CliRunner, args: list[str]) -> None:
    """``-V``/``--version`` print ``arkor X.Y.Z`` and exit 0."""
    result = cli(*args)
    assert result.exit_code == 0
    assert result.stdout == f"arkor {__version__}\n"
    assert result.stderr == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_works_everywhere(cli: CliRunner, command: str, flag: str) -> None:
    """Both help flags work on the root and on every command, with exit 0."""
    args = [command, flag] if command else [flag]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Usage: arkor {command}".rstrip())
    assert "-h, --help" in result.stdout


def test_root_help_lists_every_command(cli: CliRunner) -> None:
    """The root help is where a new user discovers the commands."""
    result = cli("--help")
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


# --- exit codes and error output ---------------------------------------------------------------


def test_valid_config_exits_0(project: Path, cli: CliRunner) -> None:
    """``arkor validate`` on a good config says so on stdout."""
    minimal_project(project)
    result = cli("validate")
    assert result.exit_code == 0, result.stderr
    assert "arkor.toml is valid" in result.stdout
    assert result.stderr == ""


def test_invalid_config_exits_2_on_stderr(project: Path, cli: CliRunner) -> None:
    """A schema error is exit 2, one located paragraph on stderr, nothing on stdout."""
    minimal_project(project, MINIMAL_TOML.replace("max_steps = 10", "max_steps = 0"))
    result = cli("validate")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert (
        f"arkor.toml:{line_of(MINIMAL_TOML, 'max_steps')}:13: trainer.max_steps:" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["build", "--bogus"], ["validate", "--nope=1"]])
def test_unknown_option_exits_2(cli: CliRunner, args: list[str]) -> None:
    """A flag the command does not have is a usage error."""
    result = cli(*args)
    assert result.exit_code == 2
    assert "No such option" in result.stderr


def test_unknown_command_exits_2(cli: CliRunner) -> None:
    """A misspelt command is a usage error that names it."""
    result = cli("biuld")
    assert result.exit_code == 2
    assert "biuld" in result.stderr


@pytest.mark.parametrize("command", ["validate", "build"])
def test_no_config_found_points_at_init(project: Path, cli: CliRunner, command: str) -> None:
    """In an empty folder the error says how to start: ``arkor init``."""
    result = cli(command)
    assert result.exit_code == 2
    assert "No Arkor config found" in result.stderr
    assert "`arkor init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_path_exits_2(project: Path, cli: CliRunner) -> None:
    """``-c`` naming a file that is not there is a config error, not a crash."""
    result = cli("validate", "-c", "configs/none.toml")
    assert result.exit_code == 2
    assert "none.toml" in result.stderr


def test_config_chosen_with_c(project: Path, cli: CliRunner) -> None:
    """``-c`` picks a config outside the default names."""
    minimal_project(project)
    (project / "arkor.toml").rename(project / "small.toml")
    result = cli("validate", "-c", "small.toml")
    assert result.exit_code == 0, result.stderr
    assert "small.toml is valid" in result.stdout


def test_set_override_is_validated(project: Path, cli: CliRunner) -> None:
    """A bad ``--set`` value is reported against the override that gave it."""
    minimal_project(project)
    result = cli("validate", "--set", "trainer.max_steps=-1")
    assert result.exit_code == 2
    assert "--set trainer.max_steps=-1" in result.stderr


def _raising_project(root: Path) -> None:
    config = MINIMAL_TOML + '\n[trainer.callbacks]\non_log = "demo_pkg.callbacks:on_log"\n'
    minimal_project(root, config)
    callbacks_project(root, "raise RuntimeError('broken at import')\n")


def test_errors_show_no_traceback_by_default(project: Path) -> None:
    """A real process prints one paragraph and exit 2 for a callback that fails to import."""
    _raising_project(project)
    result = run_process("build", cwd=project)
    assert result.exit_code == 2
    assert "broken at import" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--debug", "build"], {}), (["build", "--debug"], {}), (["build"], {"ARKOR_DEBUG": "1"})],
    ids=["--debug first", "--debug last", "ARKOR_DEBUG=1"],
)
def test_debug_shows_the_traceback(project: Path, args: list[str], env: dict[str, str]) -> None:
    """``--debug`` anywhere, or ``ARKOR_DEBUG=1``, adds the traceback before the message."""
    _raising_project(project)
    result = run_process(*args, cwd=project, env=env)
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.index("Traceback") < result.stderr.index("broken at import")


# --- validate ----------------------------------------------------------------------------------


def test_validate_json_reports_located_errors(project: Path, cli: CliRunner) -> None:
    """``--format json`` gives tools every field, including the did-you-mean suggestion."""
    config = MINIMAL_TOML.replace("max_steps = 10", "max_step = 10")
    minimal_project(project, config)
    result = cli("validate", "--format", "json")
    assert result.exit_code == 2
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["errors"] == [
        {
            "file": "arkor.toml",
            "line": line_of(config, "max_step"),
            "column": 1,
            "path": "trainer.max_step",
            "message": "unknown key `max_step` in `trainer`.",
            "suggestion": "max_steps",
        }
    ]


def test_validate_text_suggests_the_right_key(project: Path, cli: CliRunner) -> None:
    """People get the same suggestion as tools, as a question."""
    minimal_project(project, MINIMAL_TOML.replace("max_steps = 10", "max_step = 10"))
    result = cli("validate")
    assert result.exit_code == 2
    assert "Did you mean `max_steps`?" in result.stderr


def test_validate_reports_every_error_at_once(project: Path, cli: CliRunner) -> None:
    """Two mistakes, two errors, one run."""
    config = MINIMAL_TOML.replace("max_steps = 10", "max_steps = 0\nlerning_rate = 0.1")
    minimal_project(project, config)
    data = json.loads(cli("validate", "--format", "json").stdout)
    assert sorted(error["path"] for error in data["errors"]) == [
        "trainer.lerning_rate",
        "trainer.max_steps",
    ]


def test_validate_json_when_valid(project: Path, cli: CliRunner) -> None:
    """A valid config is ``valid: true`` with no errors."""
    minimal_project(project)
    result = cli("validate", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["errors"] == []


def test_validate_json_without_a_config(project: Path, cli: CliRunner) -> None:
    """A problem with no place in a file still comes out as a JSON error."""
    result = cli("validate", "--format", "json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert "arkor init" in data["errors"][0]["message"]


def test_two_config_candidates_are_both_named(project: Path, cli: CliRunner) -> None:
    """arkor.toml and arkor.yaml side by side is ambiguous; the error names both."""
    minimal_project(project)
    write(project, "arkor.yaml", "trainer:\n  name: other\n")
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.toml" in result.stderr
    assert "arkor.yaml" in result.stderr
    assert "more than one" in result.stderr


PYPROJECT = """\
[project]
name = "demo"
version = "0.1.0"

[tool.arkor.trainer]
name = "demo"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
max_steps = 10

[tool.arkor.trainer.dataset]
type = "huggingface"
name = "HuggingFaceH4/no_robots"
"""


def test_pyproject_tool_arkor_is_discovered(project: Path, cli: CliRunner) -> None:
    """``[tool.arkor]`` in pyproject.toml is a config like any other."""
    write(project, "pyproject.toml", PYPROJECT)
    result = cli("validate")
    assert result.exit_code == 0, result.stderr
    assert "pyproject.toml is valid" in result.stdout


def test_pyproject_without_tool_arkor_is_not_a_config(project: Path, cli: CliRunner) -> None:
    """A pyproject.toml without the table is somebody else's file."""
    write(project, "pyproject.toml", '[project]\nname = "demo"\n')
    result = cli("validate")
    assert result.exit_code == 2
    assert "No Arkor config found" in result.stderr


def test_pyproject_errors_carry_pyproject_lines(project: Path, cli: CliRunner) -> None:
    """Errors inside ``[tool.arkor]`` point at the pyproject.toml line, not a shifted one."""
    text = PYPROJECT.replace("max_steps = 10", "max_step = 10")
    write(project, "pyproject.toml", text)
    result = cli("validate")
    assert result.exit_code == 2
    assert f"pyproject.toml:{line_of(text, 'max_step')}:1: trainer.max_step:" in result.stderr


def test_yaml_errors_are_located(project: Path, cli: CliRunner) -> None:
    """YAML configs get the same file:line:col errors."""
    text = "trainer:\n  name: demo\n  model: m\n  max_step: 10\n  dataset:\n    type: huggingface\n    name: a/b\n"
    write(project, "arkor.yaml", text)
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.yaml:4:3: trainer.max_step:" in result.stderr


def test_toml_syntax_error_is_located(project: Path, cli: CliRunner) -> None:
    """A TOML syntax error is reported at its position, not as a crash."""
    write(project, "arkor.toml", '[trainer\nname = "demo"\n')
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.toml:1:" in result.stderr
    assert "TOML syntax error" in result.stderr


def test_error_in_extended_file_names_that_file(project: Path, cli: CliRunner) -> None:
    """Through ``extends``, the error names the file that holds the bad value."""
    write(project, "configs/base.toml", MINIMAL_TOML.replace("max_steps = 10", "max_steps = -3"))
    write(project, "arkor.toml", 'extends = "configs/base.toml"\n')
    result = cli("validate")
    assert result.exit_code == 2
    location = f"{Path('configs') / 'base.toml'}:{line_of(MINIMAL_TOML, 'max_steps')}:13"
    assert f"{location}: trainer.max_steps:" in result.stderr


# --- schema ------------------------------------------------------------------------------------


def test_schema_prints_the_shipped_schema(cli: CliRunner) -> None:
    """``arkor schema`` prints exactly the committed schema file."""
    result = cli("schema")
    assert result.exit_code == 0
    shipped = (REPO_ROOT / "schemas" / "arkor.schema.json").read_text(encoding="utf-8")
    assert result.stdout == shipped
    assert json.loads(result.stdout)["$schema"].startswith("http://json-schema.org/draft-07")


def test_schema_check_passes(cli: CliRunner) -> None:
    """The committed schema matches the models."""
    result = cli("schema", "--check")
    assert result.exit_code == 0, result.stderr


def test_schema_path_names_an_existing_file(cli: CliRunner) -> None:
    """``--path`` is for editors working offline: it must point at the real file."""
    result = cli("schema", "--path")
    assert result.exit_code == 0
    path = Path(result.stdout.strip())
    assert path.is_file()
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(cli("schema").stdout)


# --- colour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("valid", [True, False], ids=["success", "error"])
def test_no_color_beats_force_color(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, valid: bool
) -> None:
    """With ``NO_COLOR`` set nothing is coloured, even when colour is forced."""
    minimal_project(
        project, MINIMAL_TOML if valid else MINIMAL_TOML.replace("max_steps = 10", "max_steps = 0")
    )
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    result = cli("validate")
    assert ANSI not in result.stdout + result.stderr


@pytest.mark.parametrize("valid", [True, False], ids=["success", "error"])
def test_force_color_without_no_color_colours(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, valid: bool
) -> None:
    """The control for the test above: the same output is coloured when only forced."""
    minimal_project(
        project, MINIMAL_TOML if valid else MINIMAL_TOML.replace("max_steps = 10", "max_steps = 0")
    )
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR")
    result = cli("validate")
    assert ANSI in (result.stdout if valid else result.stderr)


def test_no_color_in_a_real_process(project: Path) -> None:
    """The environment variable works end to end, not only in-process."""
    minimal_project(project)
    result = run_process("build", cwd=project, env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert result.exit_code == 0, result.stderr
    assert ANSI not in result.stdout + result.stderr


# --- imports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["--help"], ["-h"]])
def test_version_and_help_import_nothing_heavy(project: Path, args: list[str]) -> None:
    """The fast paths stay fast: none of the modules in HEAVY (pydantic, httpx, posthog, ...)."""
    assert heavy_modules_after(args, project) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_imports_nothing_heavy(project: Path, command: str) -> None:
    """``arkor COMMAND --help`` is help too; the typer pin (<0.29) exists to keep it light."""
    installed = tuple(int(part) for part in version("typer").split(".")[:2])
    if installed >= (0, 29):
        pytest.skip(f"typer {version('typer')} is outside the supported range (<0.29)")
    assert heavy_modules_after([command, "--help"], project) == []


def test_build_imports_no_training_or_network_stack(project: Path) -> None:
    """Freezing a config needs neither torch, transformers nor an HTTP client."""
    minimal_project(project)
    found = heavy_modules_after(["build"], project)
    assert (project / ".arkor" / "build" / "manifest.json").is_file()
    assert "pydantic" in found
    assert not {"torch", "transformers", "httpx"} & set(found)


def test_probe_detects_heavy_imports(project: Path) -> None:
    """The probe above can fail: ``validate`` does need the config models."""
    minimal_project(project)
    assert "pydantic" in heavy_modules_after(["validate"], project)
