"""Dataset checks during ``arkor build``: file types, row formats, located errors, paths."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arkor.manifest import MANIFEST_RELATIVE_PATH
from tests.utils.cli import CliRunner
from tests.utils.projects import CHAT_ROW, MINIMAL_TOML, write, write_jsonl

PROMPT_ROW = {"prompt": "What is 2 + 2?", "completion": "4"}
TEXT_ROW = {"text": "Two and two make four."}
ROWS: dict[str, dict[str, Any]] = {
    "chat": CHAT_ROW,
    "prompt_completion": PROMPT_ROW,
    "text": TEXT_ROW,
}
MAPPINGS: dict[str, dict[str, str]] = {
    "chat": {"type": "chat", "messages": "messages"},
    "prompt_completion": {
        "type": "prompt_completion",
        "prompt": "prompt",
        "completion": "completion",
    },
    "text": {"type": "text", "text": "text"},
}


def config_for(path: str, extra: str = "") -> str:
    """The minimal config reading ``path``, with ``extra`` lines in ``[trainer]``."""
    text = MINIMAL_TOML.replace("data/train.jsonl", path)
    return text.replace("max_steps = 10\n", f"max_steps = 10\n{extra}")


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: json.dumps(value) if isinstance(value, list) else value
                for key, value in row.items()
            }
        )
    return buffer.getvalue()


WRITERS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "jsonl": _jsonl,
    "json": _json,
    "csv": _csv,
}


def build(cli: CliRunner, root: Path, config: str) -> tuple[int, str, dict[str, Any] | None]:
    """Write ``config``, build, and return the exit code, stderr and the manifest (if any)."""
    write(root, "arkor.toml", config)
    result = cli("build")
    manifest = root / MANIFEST_RELATIVE_PATH
    data = json.loads(manifest.read_text(encoding="utf-8")) if result.exit_code == 0 else None
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stderr, data


@pytest.mark.parametrize("file_format", list(WRITERS))
@pytest.mark.parametrize("row_format", list(ROWS))
def test_formats_are_detected_and_recorded(
    project: Path, cli: CliRunner, file_format: str, row_format: str
) -> None:
    """Every file type with every row format builds; the detected mapping goes on the wire."""
    rows = [ROWS[row_format]] * 5
    write(project, f"data/train.{file_format}", WRITERS[file_format](rows))
    code, stderr, manifest = build(cli, project, config_for(f"data/train.{file_format}"))
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["job"]["config"]["datasetFormat"] == MAPPINGS[row_format]
    assert manifest["dataset"]["fileFormat"] == file_format
    assert manifest["dataset"]["rows"] == 5


def test_json_file_may_wrap_rows_in_data(project: Path, cli: CliRunner) -> None:
    """``{"data": [...]}``, the shape many exports use, is read like a bare array."""
    write(project, "data/train.json", json.dumps({"data": [PROMPT_ROW] * 2}))
    code, stderr, manifest = build(cli, project, config_for("data/train.json"))
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["dataset"]["rows"] == 2


def test_named_format_is_checked_and_recorded(project: Path, cli: CliRunner) -> None:
    """A format named in the config is expanded to its standard columns in the manifest."""
    write_jsonl(project, "data/train.jsonl", [TEXT_ROW] * 2)
    code, stderr, manifest = build(
        cli, project, config_for("data/train.jsonl", 'dataset_format = "text"\n')
    )
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["job"]["config"]["datasetFormat"] == MAPPINGS["text"]


def test_named_format_that_does_not_fit_fails(project: Path, cli: CliRunner) -> None:
    """Saying ``text`` for chat rows is caught at build time, at the first row."""
    write_jsonl(project, "data/train.jsonl", [CHAT_ROW] * 2)
    code, stderr, _ = build(
        cli, project, config_for("data/train.jsonl", 'dataset_format = "text"\n')
    )
    assert code == 2
    assert "data/train.jsonl:1:1: row 1: missing the `text` column." in stderr


def test_column_mapping_reads_custom_names(project: Path, cli: CliRunner) -> None:
    """A mapping table lets rows use their own column names; the manifest records the mapping."""
    write_jsonl(project, "data/train.jsonl", [{"question": "2 + 2?", "answer": "4"}] * 3)
    mapping = 'dataset_format = { type = "prompt_completion", prompt = "question", completion = "answer" }\n'
    code, stderr, manifest = build(cli, project, config_for("data/train.jsonl", mapping))
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["job"]["config"]["datasetFormat"] == {
        "type": "prompt_completion",
        "prompt": "question",
        "completion": "answer",
    }


def test_chat_mapping_reads_a_custom_messages_column(project: Path, cli: CliRunner) -> None:
    """A chat dataset whose conversations live under another column builds with a mapping."""
    write_jsonl(project, "data/train.jsonl", [{"conversation": CHAT_ROW["messages"]}] * 2)
    mapping = 'dataset_format = { type = "chat", messages = "conversation" }\n'
    code, stderr, manifest = build(cli, project, config_for("data/train.jsonl", mapping))
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["job"]["config"]["datasetFormat"] == {
        "type": "chat",
        "messages": "conversation",
    }


def test_mapping_naming_a_missing_column_fails_at_the_row(project: Path, cli: CliRunner) -> None:
    """The error names the row (and its line) that lacks the mapped column."""
    rows = [
        {"question": "a?", "answer": "b"},
        {"question": "c?", "answer": "d"},
        {"question": "e?"},
    ]
    write_jsonl(project, "data/train.jsonl", rows)
    mapping = 'dataset_format = { type = "prompt_completion", prompt = "question", completion = "answer" }\n'
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl", mapping))
    assert code == 2
    assert "data/train.jsonl:3:1: row 3: missing the `answer` column." in stderr


def test_undetectable_columns_suggest_a_mapping(project: Path, cli: CliRunner) -> None:
    """Rows in no known shape get an error listing their columns and showing a mapping."""
    write_jsonl(project, "data/train.jsonl", [{"question": "a?", "answer": "b"}])
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert "`question`, `answer`" in stderr
    assert "dataset_format" in stderr


def test_bad_json_line_is_reported_at_its_line(project: Path, cli: CliRunner) -> None:
    """A line that does not parse is named as file:line, so the user can jump to it."""
    text = _jsonl([CHAT_ROW, CHAT_ROW]) + "\n" + '{"messages": [\n' + _jsonl([CHAT_ROW])
    write(project, "data/train.jsonl", text)
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert "data/train.jsonl:4:1: this line is not valid JSON" in stderr


def test_invalid_json_file_is_reported_at_its_line(project: Path, cli: CliRunner) -> None:
    """A ``.json`` file that does not parse is located at the line the parser stopped on."""
    write(project, "data/train.json", '[\n  {"text": "a"},\n  {"text": "b",}\n]\n')
    code, stderr, _ = build(cli, project, config_for("data/train.json"))
    assert code == 2
    assert "data/train.json:3:1: the file is not valid JSON" in stderr


def test_wrong_role_is_reported_with_its_row(project: Path, cli: CliRunner) -> None:
    """A role outside the OpenAI set is named with the row and the allowed roles."""
    bad = {
        "messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    write_jsonl(project, "data/train.jsonl", [CHAT_ROW, bad])
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert 'data/train.jsonl:2:1: row 2: `messages[0].role` is "human"' in stderr
    assert "system, user, assistant, tool" in stderr


def test_conversation_without_assistant_is_reported_with_its_row(
    project: Path, cli: CliRunner
) -> None:
    """A conversation with nothing to learn is named by its row number."""
    bad = {"messages": [{"role": "user", "content": "hi"}]}
    write_jsonl(project, "data/train.jsonl", [CHAT_ROW, CHAT_ROW, bad])
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert "row 3: `messages` has no assistant message" in stderr


def test_every_bad_row_is_reported_at_once(project: Path, cli: CliRunner) -> None:
    """Several bad rows are listed together, not one per build."""
    bad = {"messages": [{"role": "user", "content": "hi"}]}
    write_jsonl(project, "data/train.jsonl", [bad, CHAT_ROW, bad])
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert "row 1:" in stderr
    assert "row 3:" in stderr
    assert "row 2:" not in stderr


def test_empty_file_fails(project: Path, cli: CliRunner) -> None:
    """An empty dataset has nothing to train on."""
    write(project, "data/train.jsonl", "")
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert code == 2
    assert "data/train.jsonl" in stderr
    assert "empty" in stderr


def test_unsupported_extension_fails(project: Path, cli: CliRunner) -> None:
    """Only the readable file types are accepted, and the error lists them."""
    write(project, "data/train.txt", "What is 2 + 2? 4\n")
    code, stderr, _ = build(cli, project, config_for("data/train.txt"))
    assert code == 2
    assert "`.txt`" in stderr
    assert ".jsonl, .json, .csv or .parquet" in stderr


def test_parquet_with_bad_magic_bytes_fails(project: Path, cli: CliRunner) -> None:
    """A file named .parquet that lacks the PAR1 markers is refused."""
    (project / "data").mkdir()
    (project / "data" / "train.parquet").write_bytes(b"PAR0" + b"\x00" * 64 + b"PAR0")
    code, stderr, _ = build(cli, project, config_for("data/train.parquet"))
    assert code == 2
    assert "data/train.parquet" in stderr
    assert "PAR1" in stderr


def test_non_utf8_dataset_is_a_dataset_error(project: Path, cli: CliRunner) -> None:
    """A Latin-1 file is a problem with the data (exit 2, names the file), not a crash (exit 1)."""
    (project / "data").mkdir()
    (project / "data" / "train.jsonl").write_bytes('{"text": "café"}\n'.encode("latin-1"))
    code, stderr, _ = build(cli, project, config_for("data/train.jsonl"))
    assert "Unexpected error" not in stderr
    assert code == 2
    assert "data/train.jsonl" in stderr


def test_missing_file_is_reported_at_the_path_key(project: Path, cli: CliRunner) -> None:
    """The error points at the config line that names the file, not at the data."""
    config = config_for("data/nothere.jsonl")
    lines = config.splitlines()
    line = next(number for number, text in enumerate(lines, start=1) if text.startswith("path ="))
    column = lines[line - 1].index('"') + 1
    code, stderr, _ = build(cli, project, config)
    assert code == 2
    assert f"arkor.toml:{line}:{column}: trainer.dataset.path:" in stderr
    assert "nothere.jsonl" in stderr
    assert "does not exist" in stderr


BASE_IN_SUBFOLDER = """\
[trainer]
name = "base"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"

[trainer.dataset]
type = "file"
path = "data/train.jsonl"
"""


def test_path_is_relative_to_the_config_that_names_it(project: Path, cli: CliRunner) -> None:
    """A path written in an extended file in a subfolder resolves from that subfolder."""
    write(project, "configs/base.toml", BASE_IN_SUBFOLDER)
    write_jsonl(project, "configs/data/train.jsonl", [PROMPT_ROW] * 2)
    write_jsonl(project, "data/train.jsonl", [CHAT_ROW] * 3)
    config = 'extends = "configs/base.toml"\n\n[trainer]\nname = "demo"\nmax_steps = 10\n'
    code, stderr, manifest = build(cli, project, config)
    assert code == 0, stderr
    assert manifest is not None
    assert manifest["dataset"]["path"] == "configs/data/train.jsonl"
    assert manifest["dataset"]["rows"] == 2
    assert manifest["job"]["config"]["datasetFormat"] == MAPPINGS["prompt_completion"]


def test_missing_file_named_by_an_extended_config_is_located_there(
    project: Path, cli: CliRunner
) -> None:
    """When the path comes from an extended file, the error names that file's line."""
    write(project, "configs/base.toml", BASE_IN_SUBFOLDER)
    write_jsonl(project, "data/train.jsonl", [CHAT_ROW] * 3)
    config = 'extends = "configs/base.toml"\n\n[trainer]\nname = "demo"\nmax_steps = 10\n'
    code, stderr, _ = build(cli, project, config)
    assert code == 2
    assert str(Path("configs") / "base.toml") + ":7:8: trainer.dataset.path:" in stderr
    assert str(project.resolve() / "configs" / "data" / "train.jsonl") in stderr
