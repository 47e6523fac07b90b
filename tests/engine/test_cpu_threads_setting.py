"""``ARKOR_CPU_THREADS`` that is not a number of threads: a job fails with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arkor.engine._device import configure_cpu_threads
from arkor.errors import UsageError
from tests.engine.test_train import run_job


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "9" * 40])
def test_a_bad_value_is_refused_by_name(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKOR_CPU_THREADS", value)
    threads = torch.get_num_threads()

    with pytest.raises(UsageError) as raised:
        configure_cpu_threads()

    message = str(raised.value)
    assert f"ARKOR_CPU_THREADS={value} cannot be used" in message
    assert "a whole number of at least 1 (e.g. ARKOR_CPU_THREADS=4)" in message
    assert "unset it to use every host thread" in message
    assert torch.get_num_threads() == threads, "nothing changed"


def test_a_job_fails_with_that_message_not_an_int_error(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CPU_THREADS", "abc")
    monkeypatch.setenv("ARKOR_DEVICE", "cpu")

    outcome, sink, _ = run_job(tiny_model, tmp_path, max_steps=1)

    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("ARKOR_CPU_THREADS=abc cannot be used"), outcome.error
    assert "invalid literal" not in outcome.error and "ValueError" not in outcome.error
    (failed,) = [event for event in sink.events if event.type == "training.failed"]
    assert failed.error == outcome.error
