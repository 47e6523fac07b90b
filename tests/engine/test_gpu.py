"""On a CUDA GPU: training in bf16, and in 4 bits through bitsandbytes, then answering.

CI has no GPU, so these are skipped there; they run wherever one is (``-m gpu``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from arkor.engine import ADAPTER_DIRNAME
from arkor.engine._infer import GenerationRequest, InferenceEngine
from tests.engine.test_train import logs, run_job

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

LEARN = {"max_steps": 40, "logging_steps": 5, "save_steps": 100, "learning_rate": 2e-2}


def test_bf16_training_learns_and_the_adapter_answers(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, output = run_job(tiny_model, tmp_path, **LEARN)
    assert outcome.status == "completed", outcome.error
    started = sink.events[0]
    assert started.type == "training.started" and started.metadata is not None
    assert started.metadata["device"].startswith("cuda")
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert started.metadata["dtype"] == expected
    losses = [event.loss for event in logs(sink) if event.loss is not None]
    assert losses[-1] < 0.5 * losses[0]

    engine = InferenceEngine()
    request = GenerationRequest(
        str(tiny_model),
        output / ADAPTER_DIRNAME,
        [{"role": "user", "content": "capital of france?"}],
        temperature=0,
        max_tokens=4,
    )
    completion = engine.complete(request)
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_4bit_training_completes_with_finite_falling_loss(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes", reason="4-bit needs bitsandbytes")
    outcome, sink, output = run_job(tiny_model, tmp_path, load_in_4bit=True, **LEARN)
    assert outcome.status == "completed", outcome.error
    losses = [event.loss for event in logs(sink) if event.loss is not None]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert (output / ADAPTER_DIRNAME / "adapter_config.json").is_file()
