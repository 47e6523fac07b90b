"""``arkor init``: every template builds as written, and nothing the user owns is overwritten."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from arkor.manifest import MANIFEST_RELATIVE_PATH
from arkor.scaffold import AGENTS_BEGIN, AGENTS_END, list_templates
from tests.utils.cli import CliRunner, Result
from tests.utils.projects import write

TEMPLATES = ("triage", "translate", "redaction", "blank")
FORMATS = ("toml", "yaml")
STATUS_LINE = re.compile(r"^\s+(created|kept|patched)\s+(\S+)", re.M)


def statuses(result: Result) -> dict[str, str]:
    """``{path: status}`` from the lines ``arkor init`` prints."""
    return {path: status for status, path in STATUS_LINE.findall(result.stdout)}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (outside .git) and its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def init_ok(cli: CliRunner, *args: str) -> Result:
    result = cli("init", *args)
    assert result.exit_code == 0, result.stderr
    return result


# --- templates ---------------------------------------------------------------------------------


def test_the_expected_templates_ship() -> None:
    """The four documented starters are available, the default first."""
    ids = [template.id for template in list_templates()]
    assert sorted(ids) == sorted(TEMPLATES)
    assert ids[0] == "triage"


@pytest.mark.parametrize("config_format", FORMATS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_validates_and_builds(
    project: Path, cli: CliRunner, template: str, config_format: str
) -> None:
    """A fresh project is usable with no edits: validate and build both pass."""
    init_ok(cli, "--template", template, "--format", config_format, "--name", "support-bot")
    config = project / f"arkor.{config_format}"
    assert config.is_file()
    assert not (project / f"arkor.{'yaml' if config_format == 'toml' else 'toml'}").exists()
    validated = cli("validate")
    assert validated.exit_code == 0, validated.stderr
    built = cli("build")
    assert built.exit_code == 0, built.stderr
    manifest = json.loads((project / MANIFEST_RELATIVE_PATH).read_text(encoding="utf-8"))
    assert manifest["job"]["name"] == "support-bot"
    assert manifest["sources"][0]["path"] == f"arkor.{config_format}"
    rows = manifest["dataset"]["rows"]
    lines = [line for line in (project / "data" / "train.jsonl").read_text().splitlines() if line]
    assert rows == len(lines)
    assert rows >= (20 if template == "blank" else 200)
    assert set(manifest["callbacks"]) >= {"on_log", "on_checkpoint", "on_completed", "on_failed"}


def test_toml_config_starts_with_the_schema_directive(project: Path, cli: CliRunner) -> None:
    """Line 1 binds the TOML file to the schema for taplo and tombi."""
    init_ok(cli, "--format", "toml")
    first = (project / "arkor.toml").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#:schema ")
    assert first.endswith("arkor.schema.json")


def test_yaml_config_starts_with_the_schema_modeline(project: Path, cli: CliRunner) -> None:
    """Line 1 binds the YAML file to the schema for yaml-language-server."""
    init_ok(cli, "--format", "yaml")
    first = (project / "arkor.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert first.endswith("arkor.schema.json")


def test_callbacks_package_is_named_after_the_project(project: Path, cli: CliRunner) -> None:
    """``--name support-bot`` gives the package ``support_bot`` and config targets in it."""
    init_ok(cli, "--name", "support-bot")
    assert (project / "support_bot" / "callbacks.py").is_file()
    assert (project / "support_bot" / "__init__.py").is_file()
    config = (project / "arkor.toml").read_text(encoding="utf-8")
    assert 'on_log = "support_bot.callbacks:on_log"' in config
    assert 'name = "support-bot"' in config


def test_default_name_comes_from_the_folder(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--name`` the folder names the project, made into a valid name."""
    folder = tmp_path / "My Support_Bot"
    folder.mkdir()
    monkeypatch.chdir(folder)
    init_ok(cli)
    assert (folder / "my_support_bot" / "callbacks.py").is_file()
    assert 'name = "my-support-bot"' in (folder / "arkor.toml").read_text(encoding="utf-8")


# --- refusals ----------------------------------------------------------------------------------


def test_unknown_template_lists_choices_and_writes_nothing(project: Path, cli: CliRunner) -> None:
    """A typo in ``--template`` is exit 2 with every choice named, and the folder stays empty."""
    result = cli("init", "--template", "triag", "-y")
    assert result.exit_code == 2
    for template in TEMPLATES:
        assert template in result.stderr
    assert "Traceback" not in result.stderr
    assert list(project.iterdir()) == []


@pytest.mark.parametrize("name", ["Support-Bot", "9lives", "bad_name", "ends-", "a" * 80])
def test_invalid_name_writes_nothing(project: Path, cli: CliRunner, name: str) -> None:
    """A name that cannot be a package is exit 2 before anything is written."""
    result = cli("init", "--name", name, "-y")
    assert result.exit_code == 2
    assert "Invalid project name" in result.stderr
    assert list(project.iterdir()) == []


def test_unknown_format_is_a_usage_error(project: Path, cli: CliRunner) -> None:
    """Only toml and yaml are offered."""
    result = cli("init", "--format", "json")
    assert result.exit_code == 2
    assert list(project.iterdir()) == []


# --- never overwrite ---------------------------------------------------------------------------


def test_second_init_keeps_everything(project: Path, cli: CliRunner) -> None:
    """Running init again reports ``kept`` for every path and changes no byte."""
    first = init_ok(cli, "--name", "support-bot")
    assert set(statuses(first).values()) == {"created"}
    before = snapshot(project)
    second = init_ok(cli, "--name", "support-bot")
    assert statuses(second) == dict.fromkeys(statuses(first), "kept")
    assert snapshot(project) == before


def test_existing_config_is_kept(project: Path, cli: CliRunner) -> None:
    """A hand-written arkor.toml survives init byte for byte."""
    custom = '# mine\n[trainer]\nname = "custom"\n'
    write(project, "arkor.toml", custom)
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["arkor.toml"] == "kept"
    assert (project / "arkor.toml").read_text(encoding="utf-8") == custom


def test_existing_config_in_another_format_is_not_doubled(project: Path, cli: CliRunner) -> None:
    """An arkor.yaml present means no arkor.toml is added next to it (two would conflict)."""
    write(project, "arkor.yaml", "trainer:\n  name: custom\n")
    result = init_ok(cli, "--format", "toml")
    assert statuses(result)["arkor.yaml"] == "kept"
    assert not (project / "arkor.toml").exists()


def test_existing_callbacks_and_data_are_kept(project: Path, cli: CliRunner) -> None:
    """User code and data under the scaffolded names are left alone."""
    write(project, "support_bot/callbacks.py", "def on_log(ctx):\n    pass\n")
    write(project, "data/train.jsonl", '{"text": "mine"}\n')
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["support_bot/callbacks.py"] == "kept"
    assert statuses(result)["data/train.jsonl"] == "kept"
    assert (project / "support_bot" / "callbacks.py").read_text() == "def on_log(ctx):\n    pass\n"
    assert (project / "data" / "train.jsonl").read_text() == '{"text": "mine"}\n'


def test_created_files_follow_the_umask(project: Path, cli: CliRunner) -> None:
    """Scaffolded files get the permissions any new file would, not owner-only ones."""
    umask = os.umask(0)
    os.umask(umask)
    init_ok(cli, "--name", "support-bot")
    expected = 0o666 & ~umask
    for relative in (
        "arkor.toml",
        ".gitignore",
        "AGENTS.md",
        "support_bot/callbacks.py",
        "data/train.jsonl",
    ):
        assert stat.S_IMODE((project / relative).stat().st_mode) == expected, relative


# --- .gitignore --------------------------------------------------------------------------------


def test_gitignore_is_created(project: Path, cli: CliRunner) -> None:
    """A new project ignores Arkor's local state."""
    result = init_ok(cli)
    assert statuses(result)[".gitignore"] == "created"
    assert ".arkor/" in (project / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_gitignore_without_arkor_is_patched(project: Path, cli: CliRunner) -> None:
    """An existing .gitignore keeps its lines and gains ``.arkor/`` at the end."""
    write(project, ".gitignore", "node_modules/\n*.log")
    result = init_ok(cli)
    assert statuses(result)[".gitignore"] == "patched"
    assert (project / ".gitignore").read_text(encoding="utf-8") == "node_modules/\n*.log\n.arkor/\n"


def test_patched_gitignore_keeps_its_permissions(project: Path, cli: CliRunner) -> None:
    """Patching a file rewrites its content, not its mode."""
    path = write(project, ".gitignore", "node_modules/\n")
    path.chmod(0o644)
    init_ok(cli)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("line", [".arkor/", ".arkor", "/.arkor/"])
def test_gitignore_with_arkor_is_kept(project: Path, cli: CliRunner, line: str) -> None:
    """Any spelling of the ignore rule counts; the file is not touched."""
    text = f"dist/\n{line}\n"
    write(project, ".gitignore", text)
    result = init_ok(cli)
    assert statuses(result)[".gitignore"] == "kept"
    assert (project / ".gitignore").read_text(encoding="utf-8") == text


# --- AGENTS.md ---------------------------------------------------------------------------------


def test_agents_md_is_created_with_markers(project: Path, cli: CliRunner) -> None:
    """A new AGENTS.md holds only the managed block, between its markers."""
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["AGENTS.md"] == "created"
    text = (project / "AGENTS.md").read_text(encoding="utf-8")
    assert text.startswith(AGENTS_BEGIN + "\n")
    assert text.endswith(AGENTS_END + "\n")
    assert "support_bot/callbacks.py" in text


def test_agents_md_without_markers_gets_the_block_appended(project: Path, cli: CliRunner) -> None:
    """The user's text stays first and intact; the block follows it."""
    own = "# Agents\n\nAlways run the linter.\n"
    write(project, "AGENTS.md", own)
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["AGENTS.md"] == "patched"
    text = (project / "AGENTS.md").read_text(encoding="utf-8")
    assert text.startswith(own)
    assert text.count(AGENTS_BEGIN) == 1
    assert text.rstrip().endswith(AGENTS_END)


def test_agents_md_stale_block_is_replaced_in_place(project: Path, cli: CliRunner) -> None:
    """Only the text between the markers changes; what surrounds them is untouched."""
    before = "# Agents\n\nIntro written by hand.\n\n"
    after = "\n\n## Later\n\nMore hand-written text.\n"
    write(project, "AGENTS.md", f"{before}{AGENTS_BEGIN}\nold stale advice\n{AGENTS_END}{after}")
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["AGENTS.md"] == "patched"
    text = (project / "AGENTS.md").read_text(encoding="utf-8")
    assert text.startswith(before + AGENTS_BEGIN + "\n")
    assert text.endswith(AGENTS_END + after)
    assert "old stale advice" not in text
    assert "support_bot/callbacks.py" in text
    assert text.count(AGENTS_BEGIN) == text.count(AGENTS_END) == 1


def test_agents_md_current_block_is_kept(project: Path, cli: CliRunner) -> None:
    """An up-to-date block is reported as kept and the file is not rewritten."""
    init_ok(cli, "--name", "support-bot")
    path = project / "AGENTS.md"
    path.write_text(
        "Intro.\n\n" + path.read_text(encoding="utf-8") + "\nOutro.\n", encoding="utf-8"
    )
    text = path.read_text(encoding="utf-8")
    result = init_ok(cli, "--name", "support-bot")
    assert statuses(result)["AGENTS.md"] == "kept"
    assert path.read_text(encoding="utf-8") == text


def test_no_agents_md_flag_writes_none(project: Path, cli: CliRunner) -> None:
    """``--no-agents-md`` leaves AGENTS.md out entirely."""
    result = init_ok(cli, "--no-agents-md")
    assert "AGENTS.md" not in statuses(result)
    assert not (project / "AGENTS.md").exists()


# --- git ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_flag_creates_a_repository(project: Path, cli: CliRunner) -> None:
    """``--git`` runs ``git init``."""
    result = init_ok(cli, "--git")
    assert (project / ".git").is_dir()
    assert statuses(result)[".git"] == "created"


def test_skip_git_flag_does_not(project: Path, cli: CliRunner) -> None:
    """``--skip-git`` never creates a repository, even with ``-y``."""
    result = init_ok(cli, "--skip-git", "-y")
    assert not (project / ".git").exists()
    assert ".git" not in statuses(result)


def test_no_git_by_default_in_ci(project: Path, cli: CliRunner) -> None:
    """Without a flag or a terminal to ask on, no repository is created."""
    init_ok(cli)
    assert not (project / ".git").exists()


# --- no prompts --------------------------------------------------------------------------------


def test_no_prompt_in_ci(project: Path, cli: CliRunner) -> None:
    """With CI set, init takes the defaults and asks nothing."""
    result = init_ok(cli)
    assert "Template" not in result.stdout
    assert "[triage]" not in result.stdout
    assert (project / "arkor.toml").is_file()


def test_no_prompt_without_a_terminal(project: Path) -> None:
    """Outside CI, stdin that is not a terminal still means no prompt (and no hang)."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    completed = subprocess.run(
        [sys.executable, "-m", "arkor", "init"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Template" not in completed.stdout
    assert (project / "arkor.toml").is_file()
    assert not (project / ".git").exists()
