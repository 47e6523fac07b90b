"""The evaluation's held-out rows in the data stage: never trained on, copies included, and
refused when they are not the rows ``arkor build`` recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arkor._fs import sha256_file
from arkor.cloud import JobConfig
from arkor.engine._data import DataError, Example, PreparedData, prepare_data
from arkor.evals import hold_out, row_sha256, rows_digest
from tests.utils.projects import write_jsonl

SEED = 5


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def chat(number: int) -> dict[str, Any]:
    """A row told apart by its number, in prompt and answer."""
    return {
        "messages": [
            {"role": "user", "content": f"question {number}"},
            {"role": "assistant", "content": f"answer {number}"},
        ]
    }


def prepare(
    tokenizer: Any, path: Path, tmp_path: Path, eval_block: dict[str, Any], **settings: Any
) -> PreparedData:
    source = {"type": "file", "path": path.name, "sha256": sha256_file(path)[0]}
    config = JobConfig.model_validate(
        {
            "model": "tiny",
            "dataset_source": source,
            "seed": SEED,
            "eval": eval_block,
            **settings,
        }
    )
    return prepare_data(config, tokenizer, dataset_file=path, cache_dir=tmp_path / "cache")


def trained_numbers(tokenizer: Any, examples: list[Example]) -> list[int]:
    texts = [tokenizer.decode(example.input_ids) for example in examples]
    return [int(text.split("question ")[1].split("<")[0]) for text in texts]


def test_held_out_rows_and_their_copies_stay_out_of_training(
    tokenizer: Any, tmp_path: Path
) -> None:
    train, held = hold_out(20, 0.2, SEED)
    rows = [chat(number) for number in range(20)]
    rows[train[0]] = chat(held[0])  # a training row that is a copy of a held-out one
    path = write_jsonl(tmp_path, "train.jsonl", rows)

    data = prepare(tokenizer, path, tmp_path, {"held_out": 0.2, "max_new_tokens": 8})

    assert data.held_out is not None
    assert [item.number for item in data.held_out.items] == [index + 1 for index in held]
    assert [item.reference for item in data.held_out.items] == [f"answer {i}" for i in held]
    assert data.held_out.items[0].prompt == [{"role": "user", "content": f"question {held[0]}"}]
    assert (len(data.held_out.items), data.held_out.duplicates, data.rows) == (4, 1, 15)
    trained = trained_numbers(tokenizer, data.train)
    assert len(trained) == 15
    assert not set(trained) & set(held)
    assert data.eval is None  # no dataset_split: no eval loss was asked for


def test_the_default_holds_out_a_tenth_and_dataset_split_is_shared(
    tokenizer: Any, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [chat(number) for number in range(30)])
    default = prepare(tokenizer, path, tmp_path, {})
    assert default.held_out is not None
    assert [item.number - 1 for item in default.held_out.items] == hold_out(30, 0.1, SEED)[1]

    shared = prepare(tokenizer, path, tmp_path, {}, dataset_split=0.2)
    assert shared.held_out is not None and shared.eval is not None
    held = [item.number - 1 for item in shared.held_out.items]
    assert held == hold_out(30, 0.2, SEED)[1]
    assert len(shared.eval) == len(held)  # the eval loss is on the same rows

    with pytest.raises(DataError, match="differ: one set of held-out rows"):
        prepare(tokenizer, path, tmp_path, {"held_out": 0.3}, dataset_split=0.2)


def test_rows_without_an_answer_are_skipped_and_counted(tokenizer: Any, tmp_path: Path) -> None:
    _, held = hold_out(10, 0.3, SEED)
    rows = [chat(number) for number in range(10)]
    rows[held[1]] = {"messages": [{"role": "user", "content": "no answer here"}]}
    path = write_jsonl(tmp_path, "train.jsonl", rows)

    data = prepare(tokenizer, path, tmp_path, {"held_out": 0.3})

    assert data.held_out is not None
    assert (len(data.held_out.items), data.held_out.skipped) == (3, 1)
    unaskable = data.held_out.items[1]
    assert (unaskable.number, unaskable.prompt, unaskable.reference) == (held[1] + 1, None, None)


def test_held_out_rows_other_than_the_recorded_ones_fail_clearly(
    tokenizer: Any, tmp_path: Path
) -> None:
    rows = [chat(number) for number in range(20)]
    path = write_jsonl(tmp_path, "train.jsonl", rows)
    recorded = rows_digest(row_sha256(rows[index]) for index in hold_out(20, 0.2, SEED)[1])

    data = prepare(tokenizer, path, tmp_path, {"held_out": 0.2, "held_out_sha256": recorded})
    assert data.held_out is not None and data.held_out.digest == recorded

    other = rows_digest(row_sha256(rows[index]) for index in hold_out(20, 0.2, SEED + 1)[1])
    with pytest.raises(DataError, match=r"not the ones `arkor build` recorded .*arkor build"):
        prepare(tokenizer, path, tmp_path, {"held_out": 0.2, "held_out_sha256": other})


def test_an_eval_file_is_asked_and_its_copies_are_not_trained_on(
    tokenizer: Any, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [chat(number) for number in range(12)])
    eval_path = write_jsonl(tmp_path / "eval", "eval.jsonl", [chat(3), chat(40), chat(41)])
    source = {"type": "file", "upload_id": "eval-1", "path": "eval.jsonl"}
    config = JobConfig.model_validate(
        {
            "model": "tiny",
            "dataset_source": {"type": "file", "path": path.name},
            "seed": SEED,
            "eval": {"source": {**source, "sha256": sha256_file(eval_path)[0]}},
        }
    )
    data = prepare_data(
        config, tokenizer, dataset_file=path, cache_dir=tmp_path / "cache", eval_file=eval_path
    )
    assert data.held_out is not None
    assert [item.reference for item in data.held_out.items] == [
        "answer 3",
        "answer 40",
        "answer 41",
    ]
    assert (data.held_out.duplicates, data.rows) == (1, 11)
    assert 3 not in trained_numbers(tokenizer, data.train)
