"""Control-plane fixtures: real planes on loopback, identities, a tiny model, a fake worker."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.server import RunningPlane
from tests.utils.plane import Caller, running_plane, sign_up
from tests.utils.requires import need

# Workers inherit the environment: none of them may reach the HuggingFace Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

FAKE_WORKER = (sys.executable, str(Path(__file__).with_name("fake_worker.py")))
"""A worker command that speaks the protocol without training (see fake_worker.py)."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a trained BPE tokenizer, for real training and inference."""
    need("torch", "training needs the local extra")
    from tests.utils.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def plane_home(tmp_path: Path) -> Path:
    return tmp_path / "plane-home"


@pytest.fixture
def plane(plane_home: Path) -> Iterator[RunningPlane]:
    """A plane whose jobs run the fake worker, with fast pings and leases."""
    with running_plane(
        plane_home, worker_command=FAKE_WORKER, ping_interval=0.2, follow_poll_interval=0.5
    ) as running:
        yield running


@pytest.fixture
def caller(plane: RunningPlane) -> Iterator[Caller]:
    """A fresh anonymous identity on ``plane`` with a project ``demo``."""
    identity = sign_up(plane.url)
    yield identity
    identity.close()
