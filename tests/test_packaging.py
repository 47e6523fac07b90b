"""The wheel carries the schema and templates and works outside the checkout; the lock pins it all.

Offline throughout: the wheel is built with hatchling from this checkout and installed
with ``--no-index --no-deps``; the dependencies come from the interpreter running the tests.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.utils.requires import unavailable

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = REPO_ROOT / "templates"
TEMPLATE_IDS = sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / "template.toml").is_file())
SHARED_FILES = sorted(p.name for p in (TEMPLATES_DIR / "_shared").iterdir() if p.is_file())


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, f"{args} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout with hatchling."""
    if importlib.util.find_spec("hatchling") is None:
        unavailable("hatchling is not installed: pip install -e '.[dev]' (scripts/test.sh does)")
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(dist)], cwd=REPO_ROOT
    )
    wheels = list(dist.glob("arkor-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_templates_are_found_in_the_checkout() -> None:
    """Guard for the tests below: they compare the wheel against these folders."""
    assert {"triage", "translate", "redaction", "blank"} <= set(TEMPLATE_IDS)
    assert "arkor.toml.tmpl" in SHARED_FILES


def test_wheel_contains_the_schema_and_catalog(wheel: Path, wheel_names: set[str]) -> None:
    """Editors working offline and ``arkor validate`` need the schema inside the package."""
    assert "arkor/_data/schemas/arkor.schema.json" in wheel_names
    assert "arkor/_data/schemas/catalog.json" in wheel_names
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("arkor/_data/schemas/arkor.schema.json")
    assert json.loads(shipped) == json.loads(
        (REPO_ROOT / "schemas" / "arkor.schema.json").read_bytes()
    )


@pytest.mark.parametrize("template", TEMPLATE_IDS)
def test_wheel_contains_each_template(wheel_names: set[str], template: str) -> None:
    """``arkor init`` copies the sample data and reads the settings of every template."""
    assert f"arkor/_data/templates/{template}/data/train.jsonl" in wheel_names
    assert f"arkor/_data/templates/{template}/template.toml" in wheel_names


def test_wheel_contains_the_shared_template_files(wheel_names: set[str]) -> None:
    """The config, callbacks and AGENTS.md templates ship too."""
    for name in SHARED_FILES:
        assert f"arkor/_data/templates/_shared/{name}" in wheel_names


def test_wheel_contains_studios_pages_and_scripts(wheel_names: set[str]) -> None:
    """`arkor dev` serves these from the installed package: no Node, no build step."""
    static = Path(__file__).resolve().parents[1] / "arkor" / "studio" / "static"
    shipped = sorted(path.name for path in static.iterdir() if not path.name.startswith("."))
    assert {"index.html", "app.js", "style.css", "chart.js"} <= set(shipped)
    for name in shipped:
        assert f"arkor/studio/static/{name}" in wheel_names


def test_wheel_has_the_console_script_and_no_tests(wheel_names: set[str]) -> None:
    """The ``arkor`` command is declared; the test suite is not packaged."""
    assert "arkor/cli/main.py" in wheel_names
    assert any(name.endswith(".dist-info/entry_points.txt") for name in wheel_names)
    assert not any(name.startswith("tests/") for name in wheel_names)


def test_installed_wheel_inits_and_builds(wheel: Path, tmp_path: Path) -> None:
    """Installed into a fresh venv, ``arkor`` uses its own data files and builds a new project.

    The venv sees the system site-packages, and a ``.pth`` file adds the site-packages of
    the interpreter running the tests, so the dependencies resolve without any index while
    ``arkor`` itself comes only from the wheel.
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=tmp_path,
        ).stdout.strip()
    )
    outer = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (purelib / "_outer_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in dict.fromkeys(outer)), encoding="utf-8"
    )
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(CI="1", NO_COLOR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path,
        env=env,
    )
    arkor = str(python.parent / "arkor")

    work = tmp_path / "work" / "wheel-project"
    work.mkdir(parents=True)
    schema_path = Path(_run([arkor, "schema", "--path"], cwd=work, env=env).stdout.strip())
    assert schema_path.is_file()
    assert schema_path.resolve().is_relative_to(purelib.resolve())

    init = _run([arkor, "init", "-y", "--skip-git"], cwd=work, env=env)
    assert "created" in init.stdout
    assert (work / "wheel_project" / "callbacks.py").is_file()
    _run([arkor, "validate"], cwd=work, env=env)
    build = _run([arkor, "build"], cwd=work, env=env)
    assert "Built" in build.stdout
    manifest = json.loads((work / ".arkor" / "build" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["job"]["name"] == "wheel-project"
    assert manifest["dataset"]["rows"] > 0


def _locked_pins() -> dict[str, tuple[Version, int]]:
    """requirements/lock.txt as name → (pinned version, number of hashes)."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    lock = (REPO_ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8")
    for line in lock.splitlines():
        if match := re.match(r"([A-Za-z0-9._-]+)==(\S+)", line):
            name = canonicalize_name(match[1])
            pins[name] = (Version(match[2]), 0)
        elif line.strip().startswith("--hash=sha256:"):
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def test_the_lock_pins_every_dependency_of_every_extra_within_its_range() -> None:
    """A dependency added to pyproject.toml without `bash scripts/lock.sh` fails here."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"].values()
    wanted = [*project["dependencies"], *itertools.chain(*extras)]
    pins = _locked_pins()

    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/lock.txt: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), requirement
    assert all(hashes > 0 for _, hashes in pins.values()), "every pin carries its hashes"


def test_the_lock_pins_torch_as_the_cpu_build_and_no_cuda_wheels() -> None:
    pins = _locked_pins()
    cpu = (REPO_ROOT / "requirements" / "torch-cpu.txt").read_text(encoding="utf-8")

    assert pins["torch"][0].local == "cpu"
    assert f"torch=={pins['torch'][0]}" in cpu.splitlines()
    assert not [name for name in pins if name.startswith(("nvidia-", "triton"))]
