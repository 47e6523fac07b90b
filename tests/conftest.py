"""Shared fixtures: every test runs isolated, in its own folder, non-interactive, colourless."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.cli import CliRunner
from tests.utils.hub import HubCache, LoopbackHub, loopback_hub
from tests.utils.requires import need

# No test may reach the HuggingFace Hub; set before any HF library reads these.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

# A suite started in the background by a script (`pytest &`) inherits SIGINT ignored, and so
# would every command it starts; the Ctrl-C tests need the signal delivered. A handler, unlike
# SIG_IGN, is reset to the default in each child the suite starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary ARKOR_HOME, Hub cache and working folder, CI=1 and NO_COLOR=1 for every test.

    Telemetry is off (ARKOR_TELEMETRY_DISABLED=1, no PostHog host) so no test sends usage
    events; the telemetry tests turn it back on.
    """
    home = tmp_path / "arkor-home"
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("ARKOR_HOME", str(home))
    # builds pin Hub ids from this cache: an empty one, whatever this machine has downloaded
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("ARKOR_DEBUG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("ARKOR_TELEMETRY_DISABLED", "1")
    for name in (
        "DO_NOT_TRACK",
        "ARKOR_TELEMETRY_DEBUG",
        "ARKOR_TELEMETRY_HOST",
        "ARKOR_TELEMETRY_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)
    yield project
    _forget_modules_under(tmp_path)


def _forget_modules_under(root: Path) -> None:
    """Builds import the projects' callback packages; drop them so tests stay independent."""
    prefixes = (str(root), str(root.resolve()))
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(prefixes):
            del sys.modules[name]


@pytest.fixture
def project(isolation: Path) -> Path:
    """The current working folder of the test, empty at the start."""
    return isolation


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny random Llama and a trained BPE tokenizer with a chat template.

    Built once per session; needs the ``local`` extra (the tests that use it skip without).
    """
    need("torch", "the tiny model needs the local extra")
    from tests.utils.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run ``arkor`` in-process through its real entry point and capture what it prints."""
    return CliRunner(capsys)


@pytest.fixture
def hub_cache(isolation: Path) -> HubCache:
    """This test's Hugging Face Hub cache (``HF_HUB_CACHE``), empty at the start."""
    return HubCache(Path(os.environ["HF_HUB_CACHE"]))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """Online, against a Hub on loopback that knows only the branches a test gives it."""
    with loopback_hub() as server:
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
