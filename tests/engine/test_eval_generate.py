"""Batched greedy generation: the same answers as one request at a time, in the input order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from arkor.engine._infer import GenerationRequest, GenerationStopped, InferenceEngine

PROMPTS = [
    [{"role": "user", "content": text}]
    for text in (
        "hello",
        "the capital of france is paris. the capital of spain is",
        "red green blue yellow one two three four five six seven eight nine ten",
        "bug",
        "good morning and good night, how are you?",
    )
] + [[{"role": "system", "content": "you triage tickets."}, {"role": "user", "content": "refund"}]]


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random weights, so its answers differ from the base's."""
    folder = tmp_path_factory.mktemp("adapter")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def one_by_one(
    engine: InferenceEngine, model: Path, adapter: Path | None, tokens: int
) -> list[str]:
    return [
        engine.complete(
            GenerationRequest(str(model), adapter, messages, temperature=0, max_tokens=tokens)
        )
        .choices[0]
        .message.content
        for messages in PROMPTS
    ]


def test_batched_greedy_equals_one_request_at_a_time(tiny_model: Path, adapter: Path) -> None:
    engine = InferenceEngine()
    for folder in (None, adapter, None):  # the base again after the adapter was loaded
        batched = engine.generate_batch(
            str(tiny_model), None, folder, PROMPTS, max_new_tokens=20, batch_size=4
        )
        assert batched == one_by_one(engine, tiny_model, folder, 20)
    base = engine.generate_batch(
        str(tiny_model), None, None, PROMPTS, max_new_tokens=20, batch_size=3
    )
    tuned = engine.generate_batch(
        str(tiny_model), None, adapter, PROMPTS, max_new_tokens=20, batch_size=3
    )
    assert base != tuned


def test_progress_follows_batches_and_stop_ends_between_them(tiny_model: Path) -> None:
    engine = InferenceEngine()
    seen: list[tuple[int, int]] = []
    engine.generate_batch(
        str(tiny_model),
        None,
        None,
        PROMPTS,
        max_new_tokens=4,
        batch_size=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(4, 6), (6, 6)]

    stop = threading.Event()

    def stop_after_first(done: int, total: int) -> None:
        stop.set()

    with pytest.raises(GenerationStopped):
        engine.generate_batch(
            str(tiny_model),
            None,
            None,
            PROMPTS,
            max_new_tokens=4,
            batch_size=2,
            progress=stop_after_first,
            stop=stop,
        )
