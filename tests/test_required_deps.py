"""A broken ML install fails CI instead of skipping every engine, training and SDK test.

pytest runs in a subprocess with a plugin that makes ``import <module>`` fail, as a missing
or broken install does. With ``CI`` or ``ARKOR_REQUIRE_ENGINE=1`` the run fails and says
why; without either (a developer without the ``local`` extra) the tests skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """\
import importlib.abc
import os
import sys

BLOCKED = set(os.environ["ARKOR_TEST_BLOCKED"].split(","))


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is broken in this test")
        return None


sys.meta_path.insert(0, Blocker())
"""


def only(folder: str) -> list[str]:
    """Arguments that collect only ``tests/<folder>``, as a whole-suite run reaches it.

    Naming the folder itself would load its conftest before collection, where pytest cannot
    report a skip or a failure as such.
    """
    others = [path for path in (REPO_ROOT / "tests").iterdir() if path.name != folder]
    return ["tests", *(f"--ignore={path.relative_to(REPO_ROOT)}" for path in sorted(others))]


def pytest_in_subprocess(
    tmp_path: Path, args: list[str], blocked: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``pytest args`` with ``blocked`` (comma-separated) unimportable, outside this run's CI=1."""
    (tmp_path / "block_imports.py").write_text(BLOCKER, encoding="utf-8")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CI", "ARKOR_REQUIRE_ENGINE", "PYTEST_ADDOPTS")
    }
    environment.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        ARKOR_TEST_BLOCKED=blocked,
        **env,
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        [*command, "-p", "block_imports"] if blocked else command,
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


CASES = [
    pytest.param("torch", "engine", id="engine-torch"),
    pytest.param("torch", "sdk", id="sdk-torch"),
    pytest.param("fastapi", "sdk", id="sdk-fastapi"),
]


@pytest.mark.parametrize(
    "required", [{"CI": "true"}, {"ARKOR_REQUIRE_ENGINE": "1"}], ids=["CI", "REQUIRE"]
)
@pytest.mark.parametrize(("blocked", "folder"), CASES)
def test_a_missing_engine_dependency_fails_where_it_is_required(
    tmp_path: Path, required: dict[str, str], blocked: str, folder: str
) -> None:
    run = pytest_in_subprocess(tmp_path, only(folder), blocked, required)

    assert run.returncode == pytest.ExitCode.INTERRUPTED, run.stdout  # a collection error
    assert f"ERROR tests/{folder} - Failed:" in run.stdout
    assert "forbids skipping" in run.stdout and f"import {blocked} failed" in run.stdout
    assert "skipped" not in run.stdout


@pytest.mark.parametrize(("blocked", "folder"), CASES)
def test_a_developer_without_the_extra_gets_skips(
    tmp_path: Path, blocked: str, folder: str
) -> None:
    run = pytest_in_subprocess(tmp_path, only(folder), blocked, {"CI": "0"})

    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, run.stdout  # skipped whole
    assert f"import {blocked} failed" in run.stdout
    assert "1 skipped" in run.stdout and "passed" not in run.stdout


@pytest.mark.slow
def test_missing_smollm2_weights_fail_where_they_are_required(tmp_path: Path) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    env = {"ARKOR_REQUIRE_ENGINE": "1", "ARKOR_SMOLLM2_DIR": str(empty)}
    target = "tests/engine/test_smollm2.py::test_smollm2_from_gguf_answers_paris"

    run = pytest_in_subprocess(tmp_path, [target], "", env)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert f"SmolLM2 is not in {empty}" in run.stdout and "forbids skipping" in run.stdout
