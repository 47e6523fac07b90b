"""The data stage: every source, every row format, label masking token by token, splits."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from arkor._fs import sha256_file
from arkor.cloud import FileDatasetSource, JobConfig
from arkor.engine import _data
from arkor.engine._data import (
    IGNORE_INDEX,
    DataError,
    Example,
    PreparedData,
    load_rows,
    prepare_data,
)
from arkor.engine._models import ModelError
from tests.engine.conftest import BlobServer
from tests.utils.projects import write, write_jsonl

END = "<|im_end|>"
CHAT_ROW = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": " six, of course"},
    ]
}
PROMPT_ROW = {"prompt": "What is the capital of france?", "completion": " paris"}
TEXT_ROW = {"text": "the capital of spain is madrid."}
ROWS: dict[str, dict[str, Any]] = {
    "chat": CHAT_ROW,
    "prompt_completion": PROMPT_ROW,
    "text": TEXT_ROW,
}
LEARNED: dict[str, list[str]] = {
    "chat": ["4" + END, " six, of course" + END],
    "prompt_completion": [" paris" + END],
    "text": ["the capital of spain is madrid." + END],
}
"""What the labels keep for each row format, with the tiny tokenizer's chat template."""


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    """The tiny model's tokenizer, with its ChatML chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture
def plain_tokenizer(tiny_model: Path) -> Any:
    """The same tokenizer without a chat template, as a base (non-instruct) model has."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tiny_model)
    loaded.chat_template = None
    return loaded


def job(source: dict[str, Any], **settings: Any) -> JobConfig:
    """A job config for ``source`` with ``settings`` (snake_case JobConfig fields)."""
    return JobConfig(model="tiny", dataset_source=source, **settings)


def prepare_file(tokenizer: Any, path: Path, cache_dir: Path, **settings: Any) -> PreparedData:
    """Prepare a local ``file`` source, as the worker does with an uploaded file (pinned by build)."""
    pin = sha256_file(path)[0] if path.is_file() else None
    source = {"type": "file", "path": path.name, "sha256": pin}
    return prepare_data(job(source, **settings), tokenizer, dataset_file=path, cache_dir=cache_dir)


def labelled(tokenizer: Any, example: Example) -> list[str]:
    """The decoded runs of consecutive tokens that keep their labels."""
    runs: list[list[int]] = []
    previous_kept = False
    for token, label in zip(example.input_ids, example.labels, strict=True):
        kept = label != IGNORE_INDEX
        if kept:
            assert label == token, "a kept label must be the token itself"
            if not previous_kept:
                runs.append([])
            runs[-1].append(token)
        previous_kept = kept
    return [tokenizer.decode(run) for run in runs]


def rendered(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False))


def numbered(count: int) -> list[dict[str, str]]:
    """Rows told apart by their completion."""
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    return [
        {"prompt": "count: ", "completion": f"{words[i % 10]} {words[i // 10 % 10]}"}
        for i in range(count)
    ]


def completions(tokenizer: Any, examples: list[Example]) -> list[str]:
    return [labelled(tokenizer, example)[0].removesuffix(END) for example in examples]


# Local files


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return buffer.getvalue()


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS: dict[str, Callable[[Path, list[dict[str, Any]]], Path]] = {
    "train.jsonl": lambda folder, rows: write_jsonl(folder, "train.jsonl", rows),
    "train.ndjson": lambda folder, rows: write_jsonl(folder, "train.ndjson", rows),
    "train.json": lambda folder, rows: write(folder, "train.json", json.dumps(rows)),
    "wrapped.json": lambda folder, rows: write(folder, "wrapped.json", json.dumps({"data": rows})),
    "train.csv": lambda folder, rows: write(folder, "train.csv", _csv(rows)),
    "train.parquet": lambda folder, rows: _parquet(folder / "train.parquet", rows),
}


@pytest.mark.parametrize("row_format", list(ROWS))
@pytest.mark.parametrize("file_name", list(WRITERS))
def test_local_files_of_every_type_and_format(
    tokenizer: Any, tmp_path: Path, file_name: str, row_format: str
) -> None:
    """Each file type reads each row format; the format is detected and the labels are right."""
    path = WRITERS[file_name](tmp_path, [ROWS[row_format]] * 3)
    data = prepare_file(tokenizer, path, tmp_path / "cache")
    assert data.format["type"] == row_format
    assert data.rows == 3
    assert data.eval is None
    assert data.truncated == 0
    assert [labelled(tokenizer, example) for example in data.train] == [LEARNED[row_format]] * 3


def test_csv_cells_stay_text(tokenizer: Any, tmp_path: Path) -> None:
    """A number in a CSV cell is the text the user wrote (as `arkor build` read it), not a float."""
    path = write(tmp_path, "train.csv", "prompt,completion\n2 + 2 = ,4\nNA is ,NA\n")
    data = prepare_file(tokenizer, path, tmp_path / "cache")
    assert [labelled(tokenizer, example) for example in data.train] == [["4" + END], ["NA" + END]]


def test_load_rows_returns_a_dataset_of_the_file(tmp_path: Path) -> None:
    """Rows whose columns differ still load: a missing column reads as None."""
    path = write_jsonl(tmp_path, "rows.jsonl", [{"text": "a"}, {"text": "b", "source": "web"}])
    rows = load_rows(
        FileDatasetSource(path="rows.jsonl"),
        dataset_file=path,
        cache_dir=tmp_path / "cache",
    )
    assert rows.to_list() == [{"text": "a", "source": None}, {"text": "b", "source": "web"}]


def test_missing_upload_is_a_data_error(tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`train\.jsonl`"):
        prepare_file(tokenizer, tmp_path / "train.jsonl", tmp_path / "cache")


def test_uploaded_copy_without_extension_takes_the_original_name_s_type(
    tokenizer: Any, tmp_path: Path
) -> None:
    """A plane may store an upload under its id; the frozen path still says what it is."""
    stored = write_jsonl(tmp_path, "upload-1234", [PROMPT_ROW])
    source = {"type": "file", "uploadId": "upload-1234", "path": "data/train.jsonl"}
    data = prepare_data(job(source), tokenizer, dataset_file=stored, cache_dir=tmp_path / "c")
    assert data.format["type"] == "prompt_completion"


# Blobs served from loopback


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_blob_with_the_right_token_downloads(
    tokenizer: Any, tmp_path: Path, blob_server: BlobServer
) -> None:
    url = blob_server.add("/private/train.jsonl", _jsonl([CHAT_ROW] * 2))
    source = {"type": "blob", "url": url, "token": "s3cret"}
    data = prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")
    assert blob_server.authorizations == ["Bearer s3cret"]
    assert [labelled(tokenizer, example) for example in data.train] == [LEARNED["chat"]] * 2
    cached = list((tmp_path / "cache" / "blobs").iterdir())
    assert len(cached) == 1, "one file, named by the URL's hash, and no partial download left"
    assert cached[0].suffix == ".jsonl"


@pytest.mark.parametrize("token", ["wrong", None])
def test_blob_with_a_refused_token_says_so(
    tokenizer: Any, tmp_path: Path, blob_server: BlobServer, token: str | None
) -> None:
    url = blob_server.add("/private/train.jsonl", _jsonl([CHAT_ROW]))
    source = {"type": "blob", "url": url, "token": token}
    with pytest.raises(DataError, match="token") as caught:
        prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")
    assert f"HTTP {401 if token is None else 403}" in str(caught.value)


def test_blob_without_extension_is_read_by_content_type(
    tokenizer: Any, tmp_path: Path, blob_server: BlobServer
) -> None:
    url = blob_server.add("/export", _jsonl([PROMPT_ROW]), "application/jsonl; charset=utf-8")
    source = {"type": "blob", "url": url + "?id=7"}
    data = prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")
    assert data.format["type"] == "prompt_completion"
    assert labelled(tokenizer, data.train[0]) == LEARNED["prompt_completion"]


def test_blob_of_unknown_type_names_the_content_type(
    tokenizer: Any, tmp_path: Path, blob_server: BlobServer
) -> None:
    url = blob_server.add("/export", _jsonl([PROMPT_ROW]), "text/plain")
    with pytest.raises(DataError, match="text/plain"):
        prepare_data(
            job({"type": "blob", "url": url}),
            tokenizer,
            dataset_file=None,
            cache_dir=tmp_path / "cache",
        )


def test_blob_errors_never_show_the_url_s_query(
    tokenizer: Any, tmp_path: Path, blob_server: BlobServer
) -> None:
    """A signed URL's signature is a secret: messages name the file without it."""
    source = {"type": "blob", "url": blob_server.url + "/missing.jsonl?sig=topsecret"}
    with pytest.raises(DataError, match="HTTP 404") as caught:
        prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")
    assert "/missing.jsonl" in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_unreachable_blob_is_a_data_error(tokenizer: Any, tmp_path: Path) -> None:
    with closed_port() as port:
        source = {"type": "blob", "url": f"http://127.0.0.1:{port}/train.jsonl"}
        with pytest.raises(DataError, match="Cannot download"):
            prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port held but not listening, so connecting to it is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


# HuggingFace datasets (a local dataset folder takes the Hub's loading path)


@pytest.fixture
def hub_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dataset folder with train and test splits, loaded offline."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "hub-dataset"
    write_jsonl(folder, "data/train.jsonl", numbered(6))
    write_jsonl(folder, "data/test.jsonl", numbered(13)[10:])
    return folder


def test_huggingface_dataset_with_a_named_eval_split(
    tokenizer: Any, tmp_path: Path, hub_folder: Path
) -> None:
    source = {"type": "huggingface", "name": str(hub_folder)}
    data = prepare_data(
        job(source, dataset_split="test"),
        tokenizer,
        dataset_file=None,
        cache_dir=tmp_path / "cache",
    )
    assert completions(tokenizer, data.train) == [row["completion"] for row in numbered(6)]
    assert data.eval is not None
    assert completions(tokenizer, data.eval) == ["one two", "two two", "three two"]
    assert (tmp_path / "cache" / "datasets").is_dir()


def test_huggingface_source_split_is_the_training_split(
    tokenizer: Any, tmp_path: Path, hub_folder: Path
) -> None:
    source = {"type": "huggingface", "name": str(hub_folder), "split": "test"}
    data = prepare_data(job(source), tokenizer, dataset_file=None, cache_dir=tmp_path / "cache")
    assert data.rows == 3


def test_unknown_huggingface_split_is_named(
    tokenizer: Any, tmp_path: Path, hub_folder: Path
) -> None:
    source = {"type": "huggingface", "name": str(hub_folder)}
    with pytest.raises(DataError, match=r"split `validation`.*Unknown split"):
        prepare_data(
            job(source, dataset_split="validation"),
            tokenizer,
            dataset_file=None,
            cache_dir=tmp_path / "cache",
        )


def test_named_split_of_a_file_explains_itself(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [PROMPT_ROW] * 4)
    with pytest.raises(DataError, match="only HuggingFace datasets have named splits"):
        prepare_file(tokenizer, path, tmp_path / "cache", dataset_split="test")


# Formats and masking


def test_chat_masks_everything_but_the_assistant_turns(tokenizer: Any, tmp_path: Path) -> None:
    """Input ids are the template's rendering; labels keep each reply and its end token."""
    path = write_jsonl(tmp_path, "train.jsonl", [CHAT_ROW])
    example = prepare_file(tokenizer, path, tmp_path / "cache").train[0]
    assert tokenizer.decode(example.input_ids) == rendered(tokenizer, CHAT_ROW["messages"])
    assert labelled(tokenizer, example) == LEARNED["chat"]


def test_prompt_completion_uses_the_chat_template(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [PROMPT_ROW])
    example = prepare_file(tokenizer, path, tmp_path / "cache").train[0]
    messages = [
        {"role": "user", "content": PROMPT_ROW["prompt"]},
        {"role": "assistant", "content": PROMPT_ROW["completion"]},
    ]
    assert tokenizer.decode(example.input_ids) == rendered(tokenizer, messages)
    assert labelled(tokenizer, example) == LEARNED["prompt_completion"]


def test_prompt_completion_without_a_template_is_plain_text(
    plain_tokenizer: Any, tmp_path: Path
) -> None:
    """A base model sees prompt + completion + EOS, and learns the completion and the EOS."""
    path = write_jsonl(tmp_path, "train.jsonl", [PROMPT_ROW])
    example = prepare_file(plain_tokenizer, path, tmp_path / "cache").train[0]
    assert plain_tokenizer.decode(example.input_ids) == (
        PROMPT_ROW["prompt"] + PROMPT_ROW["completion"] + END
    )
    assert labelled(plain_tokenizer, example) == LEARNED["prompt_completion"]


def test_token_across_the_prompt_boundary_is_learned(plain_tokenizer: Any, tmp_path: Path) -> None:
    """Plain text tokenizes " paris" as one token even when the space ends the prompt.

    That token is learned rather than masked, or the completion's first word never would be.
    """
    path = write_jsonl(tmp_path, "train.jsonl", [{"prompt": "capital? ", "completion": "paris"}])
    example = prepare_file(plain_tokenizer, path, tmp_path / "cache").train[0]
    assert labelled(plain_tokenizer, example) == [" paris" + END]


def test_text_rows_learn_every_token_and_the_eos(plain_tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [TEXT_ROW])
    example = prepare_file(plain_tokenizer, path, tmp_path / "cache").train[0]
    assert example.labels == example.input_ids
    assert example.input_ids[-1] == plain_tokenizer.eos_token_id


def test_chat_rows_need_a_chat_template(plain_tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [CHAT_ROW])
    with pytest.raises(ModelError, match="no chat template"):
        prepare_file(plain_tokenizer, path, tmp_path / "cache")


@pytest.mark.parametrize("row_format", ["chat", "prompt_completion"])
def test_training_on_whole_rows(tokenizer: Any, tmp_path: Path, row_format: str) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [ROWS[row_format]])
    data = prepare_file(tokenizer, path, tmp_path / "cache", train_on_responses_only=False)
    assert data.train[0].labels == data.train[0].input_ids


def test_template_that_rewrites_earlier_turns_is_still_masked_exactly(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Some templates (reasoning models) render the last reply differently from earlier ones."""
    from transformers import AutoTokenizer

    reasoning = AutoTokenizer.from_pretrained(tiny_model)
    reasoning.chat_template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['role'] == 'assistant' and loop.last %}{{ '<think></think>' }}{% endif %}"
        "{{ message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    path = write_jsonl(tmp_path, "train.jsonl", [CHAT_ROW])
    example = prepare_file(reasoning, path, tmp_path / "cache").train[0]
    assert labelled(reasoning, example) == ["4" + END, "<think></think> six, of course" + END]


def test_keys_arrow_filled_with_none_are_not_passed_to_the_template(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Parquet gives every message every key any message has; templates must not see the Nones."""
    from transformers import AutoTokenizer

    named = AutoTokenizer.from_pretrained(tiny_model)
    named.chat_template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] }}"
        "{% if message.name is defined %}{{ ' ' + message.name }}{% endif %}"
        "{{ '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    messages = [
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": "hello"},
    ]
    path = tmp_path / "train.parquet"
    _parquet(path, [{"messages": messages}])
    example = prepare_file(named, path, tmp_path / "cache").train[0]
    assert named.decode(example.input_ids) == (
        "<|im_start|>user bob\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    )


def test_custom_column_mapping(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [{"question": "2 + 2?", "answer": "4"}] * 2)
    mapping = {"type": "prompt_completion", "prompt": "question", "completion": "answer"}
    data = prepare_file(tokenizer, path, tmp_path / "cache", dataset_format=mapping)
    assert data.format == mapping
    assert labelled(tokenizer, data.train[0]) == ["4" + END]


def test_mapping_may_rename_only_some_columns(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [{"conversation": CHAT_ROW["messages"]}])
    data = prepare_file(
        tokenizer,
        path,
        tmp_path / "cache",
        dataset_format={"type": "chat", "messages": "conversation"},
    )
    assert labelled(tokenizer, data.train[0]) == LEARNED["chat"]


def test_mapping_naming_a_missing_column_lists_the_columns(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [{"question": "2 + 2?", "answer": "4"}])
    mapping = {"type": "prompt_completion", "prompt": "question", "completion": "reply"}
    with pytest.raises(DataError, match=r"no `reply` column.*`question`, `answer`"):
        prepare_file(tokenizer, path, tmp_path / "cache", dataset_format=mapping)


def test_named_format_expands_to_its_columns(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", [TEXT_ROW])
    data = prepare_file(tokenizer, path, tmp_path / "cache", dataset_format="text")
    assert data.format == {"type": "text", "text": "text"}


def test_unknown_format_is_refused_by_the_job_config_before_the_engine() -> None:
    with pytest.raises(ValidationError, match=r"dataset_format[\s\S]*'auto', 'chat'"):
        job({"type": "file", "uploadId": "upl_x"}, dataset_format="sharegpt")


# Length


def test_long_rows_are_truncated_to_max_length(tokenizer: Any, tmp_path: Path) -> None:
    long = {"prompt": "hi ", "completion": "red green blue yellow " * 20}
    path = write_jsonl(tmp_path, "train.jsonl", [long, PROMPT_ROW])
    data = prepare_file(tokenizer, path, tmp_path / "cache", max_length=32)
    assert data.truncated == 1
    assert len(data.train[0].input_ids) == 32
    assert all(len(example.input_ids) <= 32 for example in data.train)


def test_rows_with_nothing_left_to_learn_are_dropped(tokenizer: Any, tmp_path: Path) -> None:
    long_prompt = {"prompt": "red green blue yellow " * 20, "completion": "four"}
    path = write_jsonl(tmp_path, "train.jsonl", [long_prompt, PROMPT_ROW])
    data = prepare_file(tokenizer, path, tmp_path / "cache", max_length=32)
    assert (data.rows, len(data.train), data.dropped, data.truncated) == (2, 1, 1, 1)
    assert labelled(tokenizer, data.train[0]) == LEARNED["prompt_completion"]


def test_nothing_left_to_learn_is_a_data_error(tokenizer: Any, tmp_path: Path) -> None:
    long_prompt = {"prompt": "red green blue yellow " * 20, "completion": "four"}
    path = write_jsonl(tmp_path, "train.jsonl", [long_prompt])
    with pytest.raises(DataError, match="max_length = 16"):
        prepare_file(tokenizer, path, tmp_path / "cache", max_length=16)


def test_batches_keep_the_row_order(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_data, "_BATCH_ROWS", 4)
    path = write_jsonl(tmp_path, "train.jsonl", numbered(10))
    data = prepare_file(tokenizer, path, tmp_path / "cache")
    assert completions(tokenizer, data.train) == [row["completion"] for row in numbered(10)]


# Evaluation split and dry runs


def test_eval_fraction_is_held_out_deterministically(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", numbered(20))

    def split(seed: int) -> tuple[list[str], list[str]]:
        data = prepare_file(tokenizer, path, tmp_path / "cache", dataset_split=0.25, seed=seed)
        assert data.eval is not None
        assert data.rows == 15
        return completions(tokenizer, data.train), completions(tokenizer, data.eval)

    train, evaluation = split(7)
    assert len(evaluation) == 5
    assert sorted(train + evaluation) == sorted(row["completion"] for row in numbered(20))
    assert split(7) == (train, evaluation)
    assert split(8) != (train, evaluation)


def test_tiny_eval_fraction_holds_out_one_row_and_keeps_one(tokenizer: Any, tmp_path: Path) -> None:
    for count, fraction in ((3, 0.01), (2, 0.9)):
        path = write_jsonl(tmp_path, "train.jsonl", numbered(count))
        data = prepare_file(tokenizer, path, tmp_path / "cache", dataset_split=fraction)
        assert data.eval is not None
        assert (len(data.train), len(data.eval)) == (count - 1, 1)


def test_eval_fraction_of_one_row_is_a_data_error(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", numbered(1))
    with pytest.raises(DataError, match="only one row"):
        prepare_file(tokenizer, path, tmp_path / "cache", dataset_split=0.5)


def test_dry_run_caps_train_and_eval_rows(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "train.jsonl", numbered(100))
    data = prepare_file(tokenizer, path, tmp_path / "cache", dataset_split=0.5, dry_run=True)
    assert data.eval is not None
    assert (data.rows, len(data.train), len(data.eval)) == (32, 32, 8)


# Bad data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _jsonl([CHAT_ROW, CHAT_ROW])
            + _jsonl([{"messages": [{"role": "human", "content": "hi"}, CHAT_ROW["messages"][2]]}]),
            r"Row 3 of the dataset file `train.jsonl` cannot be used: `messages\[0\].role` is \"human\"",
        ),
        (
            _jsonl([CHAT_ROW]) + _jsonl([{"messages": [{"role": "user", "content": "hi"}]}]),
            "Row 2 .* has no assistant message",
        ),
        (
            _jsonl([CHAT_ROW]) + "\n" + '{"messages": [\n',
            r"\(line 3\): this line is not valid JSON",
        ),
        (
            _jsonl([CHAT_ROW]) + "[1, 2]\n",
            "Row 2 .*expected an object with named columns, got list",
        ),
        (_jsonl([{"question": "a?", "answer": "b"}]), "cannot tell the format of row 1"),
        ("", "no rows"),
        ("\n\n", "no rows"),
    ],
    ids=["role", "no-assistant", "bad-json", "not-an-object", "undetectable", "empty", "blank"],
)
def test_bad_rows_are_named(tokenizer: Any, tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "train.jsonl", text)
    with pytest.raises(DataError, match=message):
        prepare_file(tokenizer, path, tmp_path / "cache")


def test_template_failure_names_the_row(tokenizer: Any, tmp_path: Path) -> None:
    """An assistant tool call with no content is valid OpenAI, but ChatML cannot render it."""
    tool_call = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
        ]
    }
    path = write_jsonl(tmp_path, "train.jsonl", [CHAT_ROW, tool_call])
    with pytest.raises(DataError, match=r"Row 2 .*chat template fails"):
        prepare_file(tokenizer, path, tmp_path / "cache")


def test_bad_parquet_is_a_data_error(tokenizer: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "train.parquet", "not parquet at all")
    with pytest.raises(DataError, match="Parquet"):
        prepare_file(tokenizer, path, tmp_path / "cache")
