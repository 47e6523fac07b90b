"""Engine fixtures: a tiny model built once per session, and toy datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No engine test may reach the HuggingFace Hub; set before any HF library reads it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

pytest.importorskip(
    "torch", reason="the engine tests need the local extra: pip install 'arkor[local]'"
)

from tests.utils.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random Llama and a trained BPE tokenizer with a chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
