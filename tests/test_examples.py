"""Every example validates and builds, so the examples never rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arkor.config import load_config
from arkor.manifest import build_project, read_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the examples, so builds write their manifests outside the repository."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    return copy


def test_pyproject_example_builds(examples: Path) -> None:
    result = build_project(examples / "pyproject" / "pyproject.toml")
    assert result.manifest.job.name == "qa-assistant"
    assert result.manifest.sources[0].path == "pyproject.toml"
    assert result.path == examples / "pyproject" / ".arkor" / "build" / "manifest.json"


@pytest.mark.parametrize("size", ["small", "large"])
def test_extends_examples_build_and_keep_the_token_a_reference(
    examples: Path, size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASET_TOKEN", "tok-value-that-must-not-leak")
    monkeypatch.chdir(examples / "extends")
    result = build_project(Path("configs") / f"{size}.yaml")
    text = result.path.read_text(encoding="utf-8")
    assert "tok-value-that-must-not-leak" not in text
    assert json.loads(text)["secrets"] == [
        {"env": "DATASET_TOKEN", "path": "trainer.dataset.token"}
    ]
    assert [source.path for source in result.manifest.sources] == [
        f"configs/{size}.yaml",
        "base.toml",
    ]
    assert result.path == examples / "extends" / ".arkor" / "build" / "manifest.json"
    assert result.manifest.job.config.lora_alpha == (32 if size == "small" else 64)


def test_large_example_takes_its_model_from_the_environment(
    examples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LARGE_MODEL", "org/custom-model")
    assert (
        load_config(examples / "extends" / "configs" / "large.yaml").config.trainer.model
        == "org/custom-model"
    )
    monkeypatch.delenv("LARGE_MODEL")
    assert (
        load_config(examples / "extends" / "configs" / "large.yaml").config.trainer.model
        == "unsloth/gemma-4-E4B-it"
    )


def test_python_api_example_runs(examples: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(examples / "python-api" / "build_and_inspect.py"),
            str(examples / "pyproject" / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "max steps 5, lora r 8" in completed.stdout
    assert completed.stdout.strip().endswith("fresh")
    manifest = read_manifest(examples / "pyproject" / ".arkor" / "build" / "manifest.json")
    assert manifest.overrides == ["trainer.max_steps=5"]


def test_python_api_example_without_a_config_prints_its_usage() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "python-api" / "build_and_inspect.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "usage: build_and_inspect.py" in completed.stderr
    assert "config" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""


def test_the_readme_links_the_examples() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    assert "](examples/)" in readme
    for folder in ("pyproject", "extends", "python-api"):
        assert f"examples/{folder}" in readme
