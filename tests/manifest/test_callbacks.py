"""Callback resolution during ``arkor build``: import, check, digest, and located errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from arkor.config import ConfigError
from arkor.manifest import MANIFEST_RELATIVE_PATH, build_project
from tests.utils.cli import CliRunner
from tests.utils.projects import MINIMAL_TOML, callbacks_project, minimal_project

GOOD_MODULE = '''\
"""Callbacks for the tests."""


def on_log(ctx):
    return ctx
'''


def config_with(**callbacks: str) -> str:
    """The minimal config plus a ``[trainer.callbacks]`` table."""
    lines = "".join(f'{event} = "{target}"\n' for event, target in callbacks.items())
    return MINIMAL_TOML + "\n[trainer.callbacks]\n" + lines


def location_of(config: str, event: str) -> str:
    """``arkor.toml:LINE:COL`` of the value of ``event`` in ``config``, computed from the text."""
    for number, line in enumerate(config.splitlines(), start=1):
        if line.startswith(f"{event} ="):
            column = line.index('"') + 1
            return f"arkor.toml:{number}:{column}"
    raise AssertionError(f"{event} is not in the config")


def manifest_of(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST_RELATIVE_PATH).read_text(encoding="utf-8"))
    return data


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "target",
    ["demo_pkg.callbacks:on_log", "demo_pkg.callbacks.on_log"],
    ids=["colon", "dotted"],
)
def test_both_target_forms_resolve(project: Path, cli: CliRunner, target: str) -> None:
    """``pkg.mod:fn`` and ``pkg.mod.fn`` are the same function; the manifest records its module file."""
    minimal_project(project, config_with(on_log=target))
    callbacks_project(project, GOOD_MODULE)
    result = cli("build")
    assert result.exit_code == 0, result.stderr
    assert manifest_of(project)["callbacks"] == {
        "on_log": {
            "target": target,
            "module": "demo_pkg.callbacks",
            "attribute": "on_log",
            "file": "demo_pkg/callbacks.py",
            "sha256": sha256_of(project / "demo_pkg" / "callbacks.py"),
        }
    }


def test_every_event_is_recorded(project: Path, cli: CliRunner) -> None:
    """All six events may name callbacks; each gets its own entry."""
    events = ("on_started", "on_log", "on_checkpoint", "on_completed", "on_failed")
    body = "".join(f"def {event}(ctx):\n    pass\n\n\n" for event in events)
    minimal_project(
        project, config_with(**{event: f"demo_pkg.callbacks:{event}" for event in events})
    )
    callbacks_project(project, body)
    result = cli("build")
    assert result.exit_code == 0, result.stderr
    recorded = manifest_of(project)["callbacks"]
    assert sorted(recorded) == sorted(events)
    assert {entry["attribute"] for entry in recorded.values()} == set(events)


def test_async_callback_is_accepted(project: Path, cli: CliRunner) -> None:
    """A coroutine function takes one context argument like any other."""
    minimal_project(project, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(project, "async def on_log(ctx):\n    return None\n")
    result = cli("build")
    assert result.exit_code == 0, result.stderr
    assert manifest_of(project)["callbacks"]["on_log"]["attribute"] == "on_log"


def test_optional_extra_parameters_are_accepted(project: Path, cli: CliRunner) -> None:
    """A function callable with one argument passes, even if it takes more optional ones."""
    minimal_project(project, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(project, "def on_log(ctx, verbose=False, *rest):\n    return None\n")
    assert cli("build").exit_code == 0


BROKEN: dict[str, tuple[str, str, str]] = {
    # name: (target, module body, expected text in the message)
    "missing module": (
        "demo_pkg.nothere:on_log",
        GOOD_MODULE,
        "no module named `demo_pkg.nothere`",
    ),
    "missing package": (
        "other_pkg.callbacks:on_log",
        GOOD_MODULE,
        "cannot import `other_pkg.callbacks`",
    ),
    "missing function": (
        "demo_pkg.callbacks:on_lgo",
        GOOD_MODULE,
        "`demo_pkg.callbacks` has no `on_lgo`",
    ),
    "not callable": ("demo_pkg.callbacks:on_log", "on_log = 42\n", "is a int, not a function"),
    "two required args": (
        "demo_pkg.callbacks:on_log",
        "def on_log(ctx, extra):\n    pass\n",
        "must accept exactly one argument",
    ),
    "no args": (
        "demo_pkg.callbacks:on_log",
        "def on_log():\n    pass\n",
        "must accept exactly one argument",
    ),
    "raises on import": (
        "demo_pkg.callbacks:on_log",
        "raise RuntimeError('the model server is down')\n",
        "raised RuntimeError: the model server is down",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_callback_is_a_located_error(project: Path, cli: CliRunner, case: str) -> None:
    """Each failure names the config line of that callback, exits 2, and shows no traceback."""
    target, body, expected = BROKEN[case]
    config = config_with(on_log=target)
    minimal_project(project, config)
    callbacks_project(project, body)
    result = cli("build")
    assert result.exit_code == 2
    assert f"{location_of(config, 'on_log')}: trainer.callbacks.on_log:" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / MANIFEST_RELATIVE_PATH).exists()


def test_all_broken_callbacks_are_reported_together(project: Path, cli: CliRunner) -> None:
    """Two bad callbacks give two located issues in one run."""
    config = config_with(
        on_log="demo_pkg.callbacks:missing_one", on_failed="demo_pkg.callbacks:missing_two"
    )
    minimal_project(project, config)
    callbacks_project(project, GOOD_MODULE)
    result = cli("build")
    assert result.exit_code == 2
    assert location_of(config, "on_log") in result.stderr
    assert location_of(config, "on_failed") in result.stderr
    assert "2 errors" in result.stderr


def test_missing_dependency_of_the_module_is_not_blamed_on_the_module(
    project: Path, cli: CliRunner
) -> None:
    """A module that imports an absent library is reported as that import failing.

    The missing library's name (``demo``) is a prefix of the package's (``demo_pkg``),
    which must not make Arkor claim that the callback module itself is missing.
    """
    config = config_with(on_log="demo_pkg.callbacks:on_log")
    minimal_project(project, config)
    callbacks_project(project, "import demo\n\n\ndef on_log(ctx):\n    pass\n")
    result = cli("build")
    assert result.exit_code == 2
    assert "cannot import `demo_pkg.callbacks`" not in result.stderr
    assert "raised ModuleNotFoundError" in result.stderr


def test_projects_sharing_a_package_name_record_their_own_files(tmp_path: Path) -> None:
    """One process building two projects checks and digests each project's own module."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root, marker in ((first, "first"), (second, "second")):
        minimal_project(root, config_with(on_log="demo_pkg.callbacks:on_log"))
        callbacks_project(root, f"MARKER = {marker!r}\n\n\ndef on_log(ctx):\n    pass\n")
    built_first = build_project(cwd=first).manifest.callbacks["on_log"]
    built_second = build_project(cwd=second).manifest.callbacks["on_log"]
    assert built_first.file == built_second.file == "demo_pkg/callbacks.py"
    assert built_first.sha256 == sha256_of(first / "demo_pkg" / "callbacks.py")
    assert built_second.sha256 == sha256_of(second / "demo_pkg" / "callbacks.py")
    assert built_first.sha256 != built_second.sha256
    assert sys.modules["demo_pkg.callbacks"].MARKER == "second"


def test_second_project_is_checked_against_its_own_module(tmp_path: Path) -> None:
    """A function the first project has but the second lacks is not found through the cache."""
    first, second = tmp_path / "first", tmp_path / "second"
    minimal_project(first, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(first, GOOD_MODULE)
    minimal_project(second, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(second, "def on_checkpoint(ctx):\n    pass\n")
    build_project(cwd=first)
    with pytest.raises(ConfigError, match="has no `on_log`"):
        build_project(cwd=second)


def test_project_without_the_package_does_not_reuse_another_projects_module(tmp_path: Path) -> None:
    """A package imported for an earlier build must not satisfy a project that lacks it."""
    first, second = tmp_path / "first", tmp_path / "second"
    minimal_project(first, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(first, GOOD_MODULE)
    minimal_project(second, config_with(on_log="demo_pkg.callbacks:on_log"))
    build_project(cwd=first)
    with pytest.raises(ConfigError, match=r"cannot import `demo_pkg\.callbacks`"):
        build_project(cwd=second)


def test_rebuild_in_process_sees_an_edited_module(project: Path, cli: CliRunner) -> None:
    """Editing the module between two builds in one process is picked up (digest and check)."""
    config = config_with(on_log="demo_pkg.callbacks:on_log")
    minimal_project(project, config)
    callbacks_project(project, GOOD_MODULE)
    assert cli("build").exit_code == 0
    module = project / "demo_pkg" / "callbacks.py"
    module.write_text("def on_log_renamed(ctx):\n    pass\n", encoding="utf-8")
    result = cli("build")
    assert result.exit_code == 2
    assert "has no `on_log`" in result.stderr


def test_project_root_leaves_sys_path_after_the_build(project: Path) -> None:
    """The project root is on ``sys.path`` only while its callbacks are imported."""
    minimal_project(project, config_with(on_log="demo_pkg.callbacks:on_log"))
    callbacks_project(project, GOOD_MODULE)
    before = list(sys.path)
    build_project(cwd=project)
    assert sys.path == before


def test_broken_module_is_one_problem_however_many_callbacks_it_holds(
    project: Path, cli: CliRunner
) -> None:
    """Four callbacks in a module that fails to import: one issue, and one import."""
    events = ("on_log", "on_checkpoint", "on_completed", "on_failed")
    config = config_with(**{event: f"demo_pkg.callbacks:{event}" for event in events})
    minimal_project(project, config)
    callbacks_project(
        project,
        "import pathlib\n\nwith pathlib.Path('imports.log').open('a') as log:\n    log.write('x')\n\n"
        "raise RuntimeError('the model server is down')\n",
    )
    result = cli("build")
    assert result.exit_code == 2
    assert result.stderr.count("the model server is down") == 1
    assert "The config has an error:" in result.stderr
    assert f"{location_of(config, 'on_log')}: trainer.callbacks.on_log:" in result.stderr
    assert "(`on_checkpoint` and `on_completed` and `on_failed` name the same module.)" in (
        result.stderr
    )
    assert (project / "imports.log").read_text(encoding="utf-8") == "x"


def test_module_is_imported_once_for_several_callbacks(project: Path, cli: CliRunner) -> None:
    """A build imports each callback module once, as ``arkor start`` does."""
    minimal_project(
        project,
        config_with(on_log="demo_pkg.callbacks:on_log", on_failed="demo_pkg.callbacks:on_log"),
    )
    callbacks_project(
        project,
        "import pathlib\n\nwith pathlib.Path('imports.log').open('a') as log:\n    log.write('x')\n\n\n"
        + GOOD_MODULE,
    )
    assert cli("build").exit_code == 0
    assert (project / "imports.log").read_text(encoding="utf-8") == "x"
