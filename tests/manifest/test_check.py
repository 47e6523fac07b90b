"""``arkor validate`` checks what the config points at, without running the project's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.cli import CliRunner
from tests.utils.projects import MINIMAL_TOML, minimal_project, write

MARKER = "import pathlib\npathlib.Path('executed').write_text('yes')\n"


def config_with(target: str) -> str:
    return MINIMAL_TOML + f'\n[trainer.callbacks]\non_log = "{target}"\n'


def test_missing_dataset_file_fails_validate(project: Path, cli: CliRunner) -> None:
    minimal_project(project)
    (project / "data" / "train.jsonl").unlink()
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.toml:8:8: trainer.dataset.path: the dataset file" in result.stderr
    assert "does not exist" in result.stderr


def test_dataset_path_that_is_a_folder_fails_validate(project: Path, cli: CliRunner) -> None:
    minimal_project(project, MINIMAL_TOML.replace("data/train.jsonl", "data"))
    result = cli("validate")
    assert result.exit_code == 2
    assert "is not a regular file" in result.stderr


def test_unsupported_dataset_type_fails_validate(project: Path, cli: CliRunner) -> None:
    minimal_project(project, MINIMAL_TOML.replace("data/train.jsonl", "data/train.txt"))
    write(project, "data/train.txt", "hello\n")
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.toml:8:8: trainer.dataset.path: unsupported dataset file type `.txt`" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("target", "missing"),
    [
        ("nowhere_pkg.callbacks:on_log", "nowhere_pkg"),
        ("demo_pkg.missing:on_log", "demo_pkg.missing"),
        ("demo_pkg.sub.deeper.callbacks:on_log", "demo_pkg.sub"),
    ],
)
def test_missing_callback_module_fails_validate(
    project: Path, cli: CliRunner, target: str, missing: str
) -> None:
    minimal_project(project, config_with(target))
    write(project, "demo_pkg/__init__.py", MARKER)
    result = cli("validate")
    assert result.exit_code == 2
    assert "arkor.toml:11:10: trainer.callbacks.on_log: cannot find the module" in result.stderr
    assert f"there is no `{missing}` in the project root" in result.stderr
    assert not (project / "executed").exists()


def test_callback_inside_a_plain_module_fails_validate(project: Path, cli: CliRunner) -> None:
    minimal_project(project, config_with("demo_mod.callbacks:on_log"))
    write(project, "demo_mod.py", MARKER)
    result = cli("validate")
    assert result.exit_code == 2
    assert "`demo_mod` is a module, not a package" in result.stderr
    assert not (project / "executed").exists()


@pytest.mark.parametrize("init", [True, False], ids=["package", "namespace-package"])
def test_present_modules_are_found_without_running_them(
    project: Path, cli: CliRunner, init: bool
) -> None:
    """Neither the package's ``__init__`` nor the module runs; a broken one still validates."""
    minimal_project(project, config_with("demo_pkg.callbacks:on_log"))
    if init:
        write(project, "demo_pkg/__init__.py", MARKER)
    write(project, "demo_pkg/callbacks.py", MARKER + "raise RuntimeError('broken')\n")
    result = cli("validate")
    assert result.exit_code == 0, result.stderr
    assert not (project / "executed").exists()


def test_installed_module_is_found(project: Path, cli: CliRunner) -> None:
    minimal_project(project, config_with("json.decoder:JSONDecoder"))
    assert cli("validate").exit_code == 0


def test_every_missing_reference_is_reported_together(project: Path, cli: CliRunner) -> None:
    minimal_project(project, config_with("nowhere_pkg.callbacks:on_log"))
    (project / "data" / "train.jsonl").unlink()
    result = cli("validate")
    assert result.exit_code == 2
    assert "The config has 2 errors:" in result.stderr
