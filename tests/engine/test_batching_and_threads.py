"""What the README promises of the engine's batches and CPU threads, on the tiny model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from arkor.cloud import JobConfig
from arkor.engine import ListSink, TrainingRun
from arkor.engine._device import choose_placement
from arkor.engine._train import LoraRecipe

SHORT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
LONG = {
    "messages": [
        {"role": "user", "content": "the capital of france is paris. " * 6},
        {"role": "assistant", "content": "red green blue yellow one two three four five six"},
    ]
}


@pytest.fixture
def mixed_rows(tmp_path: Path) -> Path:
    """Short and long rows, alternating, so any batching that ignores length mixes them."""
    path = tmp_path / "train.jsonl"
    rows = [SHORT, LONG] * 160
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_batches_group_rows_of_similar_length_and_pad_per_batch(
    tiny_model: Path, tmp_path: Path, mixed_rows: Path
) -> None:
    config = JobConfig.model_validate(
        {
            "model": str(tiny_model),
            "dataset_source": {"type": "file", "upload_id": "upload-1"},
            "max_steps": 8,
            "batch_size": 4,
            "max_length": 128,
            "seed": 3,
            "packing": False,  # padded batches: what this test measures
        }
    )
    run = TrainingRun("job-1", config, tmp_path / "job", ListSink(), dataset_file=mixed_rows)
    recipe = LoraRecipe(run)
    recipe.setup()
    try:
        assert recipe.trainer is not None
        batches = list(recipe.trainer.get_train_dataloader())
    finally:
        recipe.cleanup()

    count = len(batches)
    assert count == 80
    mixed, padding, tokens = 0, 0, 0
    for batch in batches:
        real = batch["attention_mask"].sum(dim=1)  # each row's own length
        assert batch["input_ids"].shape[1] == int(real.max()), "padded to its own longest row"
        mixed += int(real.max() - real.min() > 2)
        padding += int((real.max() - real).sum())
        tokens += int(batch["input_ids"].numel())
    # Batched in file order (or at random), nearly every batch would mix the two lengths
    # and padding would be about half of every batch.
    assert mixed <= count // 10, f"{mixed} of {count} batches mix lengths"
    assert padding / tokens < 0.1, f"{padding} of {tokens} tokens are padding"


def test_cpu_threads_default_to_the_host_and_follow_arkor_cpu_threads(
    monkeypatch: pytest.MonkeyPatch, restore_threads: None
) -> None:
    monkeypatch.setenv("ARKOR_CPU_THREADS", "1")
    placement = choose_placement("cpu")
    assert (placement.device, placement.dtype) == ("cpu", torch.float32)
    assert torch.get_num_threads() == 1

    monkeypatch.delenv("ARKOR_CPU_THREADS")
    choose_placement("cpu")
    assert torch.get_num_threads() == os.cpu_count()
