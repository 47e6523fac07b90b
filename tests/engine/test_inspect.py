"""Inspecting rows: the counts and masks are training's own, row by row, on a real tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arkor.engine._data import IGNORE_INDEX, DataError
from arkor.engine._inspect import RowsInspection, inspect_rows
from arkor.engine._models import ModelError
from tests.engine.test_data import (
    CHAT_ROW,
    END,
    LEARNED,
    PROMPT_ROW,
    ROWS,
    TEXT_ROW,
    prepare_file,
    rendered,
)
from tests.utils.projects import write_jsonl

NO_ASSISTANT = {"messages": [{"role": "user", "content": "hello world"}]}
LONG_PROMPT = {"prompt": "red green blue yellow " * 20, "completion": "four"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    """The tiny model's tokenizer, loaded as a job loads it."""
    from arkor.engine._inspect import tokenizer_for

    return tokenizer_for(str(tiny_model), None)


def inspect(tokenizer: Any, rows: list[dict[str, Any]], **settings: Any) -> RowsInspection:
    options: dict[str, Any] = {
        "dataset_format": None,
        "max_length": None,
        "train_on_responses_only": None,
        "detail": 0,
    }
    return inspect_rows(tokenizer, rows, **{**options, **settings})


def learned_text(found: RowsInspection) -> list[str]:
    """The detail row's learned pieces, joined into runs, as ``labelled`` reads training's."""
    assert found.detail is not None
    runs: list[str] = []
    previous = False
    for piece in found.detail:
        if piece.learned and previous:
            runs[-1] += piece.text
        elif piece.learned:
            runs.append(piece.text)
        previous = piece.learned
    return runs


@pytest.mark.parametrize("row_format", ["chat", "prompt_completion", "text"])
@pytest.mark.parametrize("responses_only", [True, False])
def test_counts_are_those_of_the_examples_training_builds(
    tokenizer: Any, tmp_path: Path, row_format: str, responses_only: bool
) -> None:
    row = ROWS[row_format]
    path = write_jsonl(tmp_path, "train.jsonl", [row])
    example = prepare_file(
        tokenizer, path, tmp_path / "cache", train_on_responses_only=responses_only
    ).train[0]
    found = inspect(tokenizer, [row], train_on_responses_only=responses_only)
    report = found.rows[0]
    assert report.error is None and not report.truncated
    assert report.tokens == len(example.input_ids)
    assert report.learned == len(example.labels) - example.labels.count(IGNORE_INDEX)
    assert found.detail is not None
    assert [piece.learned for piece in found.detail] == [
        label != IGNORE_INDEX for label in example.labels
    ]
    assert found.format["type"] == row_format


def test_a_chat_row_learns_exactly_its_assistant_turns(tokenizer: Any) -> None:
    found = inspect(tokenizer, [CHAT_ROW])
    assert learned_text(found) == LEARNED["chat"]
    assert found.detail is not None
    assert "".join(piece.text for piece in found.detail) == rendered(
        tokenizer, CHAT_ROW["messages"]
    )


def test_pieces_concatenate_to_the_text_even_across_split_characters(tokenizer: Any) -> None:
    """Characters outside the tiny vocabulary are split into byte tokens; no text is lost."""
    messages = [
        {"role": "user", "content": "café? 😀 ok"},
        {"role": "assistant", "content": "très bien 👍"},
    ]
    found = inspect(tokenizer, [{"messages": messages}])
    assert found.detail is not None
    assert "".join(piece.text for piece in found.detail) == rendered(tokenizer, messages)
    assert learned_text(found) == ["très bien 👍" + END]


def test_text_rows_show_the_appended_eos_as_itself(tokenizer: Any) -> None:
    found = inspect(tokenizer, [TEXT_ROW])
    assert found.detail is not None
    assert found.detail[-1].text == END and found.detail[-1].learned
    assert "".join(piece.text for piece in found.detail) == TEXT_ROW["text"] + END


def test_a_chat_row_without_an_assistant_turn_learns_nothing(tokenizer: Any) -> None:
    found = inspect(tokenizer, [CHAT_ROW, NO_ASSISTANT], detail=1)
    assert found.rows[0].learned > 0
    assert found.rows[1].learned == 0
    assert found.rows[1].error is not None and "Row 2" in found.rows[1].error
    assert "no assistant message" in found.rows[1].error
    assert found.detail is None


def test_truncation_is_flagged_and_counted_at_max_length(tokenizer: Any) -> None:
    long = {"prompt": "hi ", "completion": "red green blue yellow " * 20}
    found = inspect(tokenizer, [long, PROMPT_ROW, LONG_PROMPT], max_length=32)
    long_report, short_report, prompt_report = found.rows
    assert long_report.truncated and long_report.tokens > 32
    assert 0 < long_report.learned < long_report.tokens
    assert not short_report.truncated
    # the prompt fills the whole length: training drops this row, with nothing to learn
    assert prompt_report.truncated and prompt_report.learned == 0 and prompt_report.error is None
    assert found.max_length == 32
    assert found.detail is not None and len(found.detail) == long_report.tokens
    assert not any(piece.learned for piece in found.detail[32:])
    assert sum(piece.learned for piece in found.detail) == long_report.learned


def test_malformed_rows_are_reported_row_by_row(tokenizer: Any) -> None:
    bad_role = {"messages": [{"role": "robot", "content": "x"}]}
    not_a_list = {"messages": "not json"}
    found = inspect(tokenizer, [CHAT_ROW, bad_role, not_a_list, CHAT_ROW])
    errors = [row.error for row in found.rows]
    assert errors[0] is None and errors[3] is None
    assert errors[1] is not None and "Row 2" in errors[1] and "robot" in errors[1]
    assert errors[2] is not None and "Row 3" in errors[2]
    assert found.rows[3].learned == found.rows[0].learned


def test_the_format_setting_and_column_mapping_apply(tokenizer: Any) -> None:
    rows = [{"question": PROMPT_ROW["prompt"], "answer": PROMPT_ROW["completion"]}]
    mapping = {"type": "prompt_completion", "prompt": "question", "completion": "answer"}
    found = inspect(tokenizer, rows, dataset_format=mapping)
    assert found.format == mapping
    assert learned_text(found) == LEARNED["prompt_completion"]


def test_rows_no_format_fits_fail_the_whole_call(tokenizer: Any) -> None:
    with pytest.raises(DataError, match="cannot tell the format"):
        inspect(tokenizer, [{"question": "x"}])
    with pytest.raises(DataError, match="no `body` column"):
        inspect(tokenizer, [TEXT_ROW], dataset_format={"type": "text", "text": "body"})


def test_chat_rows_on_a_model_without_a_template_fail_the_whole_call(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_model)
    plain.chat_template = None
    with pytest.raises(ModelError, match="no chat template"):
        inspect(plain, [CHAT_ROW])
