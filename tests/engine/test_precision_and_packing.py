"""Training arithmetic (bf16 autocast on CPUs that have it) and padding-free packed batches:
each changes how fast a step runs, neither changes what the run learns beyond rounding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from arkor.engine import ListSink
from arkor.engine._device import Placement, cpu_has_native_bf16, training_precision
from arkor.engine._packing import packing_collator
from arkor.errors import ArkorError
from tests.engine.test_train import logs, run_job

SAME_RUN: dict[str, Any] = {
    "max_steps": 8,
    "logging_steps": 1,
    "save_steps": 100,
    "learning_rate": 1e-3,
}


def losses(sink: ListSink) -> list[float]:
    found = [event.loss for event in logs(sink) if event.loss is not None]
    assert len(found) == SAME_RUN["max_steps"]
    return found


def started(sink: ListSink) -> dict[str, Any]:
    metadata = sink.events[0].metadata
    assert sink.events[0].type == "training.started" and metadata is not None
    return metadata


def trained(tiny_model: Path, folder: Path, **overrides: Any) -> tuple[ListSink, dict[str, Any]]:
    folder.mkdir()
    outcome, sink, _ = run_job(tiny_model, folder, **SAME_RUN, **overrides)
    assert outcome.status == "completed", outcome.error
    return sink, outcome.metrics


def test_a_packed_batch_is_one_sequence_whose_positions_restart_per_row() -> None:
    batch = packing_collator()(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # no row learns to predict the next row's first token
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    assert "attention_mask" not in batch


def test_packed_batches_give_the_loss_curve_of_padded_ones(
    tiny_model: Path, tmp_path: Path
) -> None:
    padded, padded_metrics = trained(
        tiny_model, tmp_path / "padded", precision="fp32", packing=False
    )
    packed, packed_metrics = trained(tiny_model, tmp_path / "packed", precision="fp32")
    assert started(padded)["packing"] is False and started(packed)["packing"] is True
    assert losses(packed) == pytest.approx(losses(padded), rel=0.02)
    # the same real tokens, counted without padding either way
    assert packed_metrics["tokensSeen"] == padded_metrics["tokensSeen"]


def test_a_model_that_lets_packed_rows_see_each_other_trains_padded(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers.masking_utils

    # the fault: attention no longer finds row boundaries in the positions
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda _: None)
    sink, _ = trained(tiny_model, tmp_path / "run", precision="fp32")
    assert started(sink)["packing"] is False


def test_bf16_autocast_keeps_the_loss_curve_within_2_percent_of_fp32(
    tiny_model: Path, tmp_path: Path
) -> None:
    fp32, _ = trained(tiny_model, tmp_path / "fp32", precision="fp32")
    bf16, _ = trained(tiny_model, tmp_path / "bf16", precision="bf16")
    assert started(bf16)["precision"] == "bf16" and started(fp32)["precision"] == "fp32"
    assert started(bf16)["dtype"] == "float32", "autocast over fp32 weights, not bf16 weights"
    assert losses(bf16) == pytest.approx(losses(fp32), rel=0.02)
    assert losses(bf16) != pytest.approx(losses(fp32), rel=1e-6), "bf16 arithmetic was used"


def test_auto_trains_in_bf16_exactly_where_the_cpu_has_it(tiny_model: Path, tmp_path: Path) -> None:
    sink, _ = trained(tiny_model, tmp_path / "auto")
    assert started(sink)["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")


@pytest.mark.parametrize(
    ("setting", "native", "arithmetic"),
    [
        (None, True, "bf16"),
        ("auto", True, "bf16"),
        ("auto", False, "fp32"),
        ("fp32", True, "fp32"),
        ("bf16", False, "bf16"),
    ],
)
def test_precision_on_a_cpu(setting: str | None, native: bool, arithmetic: str) -> None:
    chosen = training_precision(Placement("cpu", torch.float32), setting, native_bf16=native)
    assert chosen.arithmetic == arithmetic
    assert chosen.placement.dtype == torch.float32
    assert chosen.autocast is (arithmetic == "bf16")


def test_fp16_on_a_cpu_is_refused_with_the_choices() -> None:
    with pytest.raises(ArkorError, match=r'needs a GPU.*"auto".*"bf16".*"fp32"'):
        training_precision(Placement("cpu", torch.float32), "fp16", native_bf16=True)


def test_a_run_asking_fp16_on_a_cpu_fails_saying_why(tiny_model: Path, tmp_path: Path) -> None:
    outcome, sink, _ = run_job(tiny_model, tmp_path, precision="fp16")
    assert outcome.status == "failed"
    assert outcome.error is not None and '"fp16", which needs a GPU' in outcome.error
    assert sink.events[-1].type == "training.failed"
