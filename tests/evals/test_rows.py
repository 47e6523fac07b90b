"""Held-out rows: chosen the same way everywhere, named by hash, split into question and answer."""

from __future__ import annotations

import pytest

from arkor.evals import RowError, choose_rows, hold_out, row_sha256, rows_digest, split_row

CHAT = {"type": "chat", "messages": "messages"}


def test_hold_out_is_seeded_disjoint_and_leaves_a_training_row() -> None:
    train, held = hold_out(320, 0.1, 42)
    assert len(held) == 32 and held == sorted(held)
    assert set(train).isdisjoint(held) and len(train) + len(held) == 320
    assert hold_out(320, 0.1, 42) == (train, held)
    assert hold_out(320, 0.1, 7)[1] != held
    assert hold_out(2, 0.9, 42)[0] != []


def test_choose_rows_samples_in_order_when_there_are_more() -> None:
    held = list(range(0, 100, 2))
    assert choose_rows(held, 100, 42) == held
    chosen = choose_rows(held, 10, 42)
    assert len(chosen) == 10 and chosen == sorted(chosen) and set(chosen) <= set(held)
    assert choose_rows(held, 10, 42) == chosen


def test_row_hash_ignores_nulls_a_table_reader_adds() -> None:
    row = {"messages": [{"role": "user", "content": "hi"}]}
    filled = {"messages": [{"role": "user", "content": "hi", "name": None}], "extra": None}
    assert row_sha256(row) == row_sha256(filled)
    assert row_sha256(row) != row_sha256({"messages": [{"role": "user", "content": "hi!"}]})


def test_rows_digest_does_not_depend_on_order() -> None:
    assert rows_digest(["b", "a"]) == rows_digest(["a", "b"]) != rows_digest(["a"])


def test_split_row_asks_everything_before_the_last_answer() -> None:
    row = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "a2"},
        ]
    }
    prompt, reference = split_row(row, CHAT)
    assert reference == "a2"
    assert [message["content"] for message in prompt] == ["s", "u1", "a1", "u2"]


def test_split_row_of_prompt_completion_and_text() -> None:
    mapping = {"type": "prompt_completion", "prompt": "q", "completion": "a"}
    assert split_row({"q": "2+2?", "a": "4"}, mapping) == (
        [{"role": "user", "content": "2+2?"}],
        "4",
    )
    with pytest.raises(RowError, match="text rows"):
        split_row({"text": "x"}, {"type": "text", "text": "text"})


def test_split_row_without_an_answer_is_a_row_error() -> None:
    with pytest.raises(RowError, match="no assistant turn"):
        split_row({"messages": [{"role": "user", "content": "u"}]}, CHAT)
