"""Dataset row formats, shared by ``arkor build``'s checks and the engine's data stage.

Both sides must agree on what a row may look like, or a file that builds could fail to
train. So the column mappings, format detection, the per-row check and the reading of
JSONL/JSON/CSV files live here, once, in plain Python (no heavy imports): the build
wraps the problems as located config errors, the engine as data errors.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FORMATS = ("chat", "prompt_completion", "text")
CHAT_ROLES = ("system", "user", "assistant", "tool")
FILE_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
"""File name suffix → how the file is read."""


class FormatError(ValueError):
    """A dataset or format setting that does not fit; ``line`` locates it in a file when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def default_mapping(name: str) -> dict[str, str]:
    """The standard column names of a format."""
    return {
        "chat": {"type": "chat", "messages": "messages"},
        "prompt_completion": {
            "type": "prompt_completion",
            "prompt": "prompt",
            "completion": "completion",
        },
        "text": {"type": "text", "text": "text"},
    }[name]


def resolve_mapping(setting: str | Mapping[str, Any] | None) -> dict[str, str] | None:
    """Turn a format setting (a name or a column mapping) into a full mapping; ``None`` = auto.

    A mapping may leave out columns that keep their standard names. Settings that came
    through the config are already valid; ones that came over the wire are checked here.
    """
    if setting is None or setting == "auto":
        return None
    if isinstance(setting, str):
        if setting not in FORMATS:
            raise FormatError(
                f"unknown dataset format {json.dumps(setting)}: expected auto, {', '.join(FORMATS)} "
                "or a column mapping."
            )
        return default_mapping(setting)
    kind = setting.get("type")
    if kind not in FORMATS:
        raise FormatError(
            f"the dataset format mapping has type {json.dumps(kind)}: expected one of "
            f"{', '.join(FORMATS)}."
        )
    mapping = default_mapping(kind)
    for key, column in setting.items():
        if key not in mapping:
            raise FormatError(
                f"the {kind} format has no `{key}` column setting (it has "
                f"{', '.join(f'`{name}`' for name in mapping if name != 'type')})."
            )
        if not isinstance(column, str) or not column:
            raise FormatError(f"the dataset format's `{key}` must name a column.")
        mapping[key] = column
    return mapping


def detect_mapping(row: Any) -> dict[str, str]:
    """The standard mapping whose columns the first row has."""
    if not isinstance(row, dict):
        raise FormatError(f"row 1 is {type(row).__name__}, expected an object with named columns.")
    if "messages" in row:
        return default_mapping("chat")
    if "prompt" in row and "completion" in row:
        return default_mapping("prompt_completion")
    if "text" in row:
        return default_mapping("text")
    columns = ", ".join(f"`{key}`" for key in row) or "none"
    raise FormatError(
        f"cannot tell the format of row 1 (columns: {columns}): expected `messages`, "
        "`prompt` + `completion`, or `text`. If your columns are named differently, map them, "
        'e.g. `dataset_format = { type = "prompt_completion", prompt = "question", completion = "answer" }`.'
    )


def messages_in(row: Mapping[str, Any], column: str) -> Any:
    """A chat column's value; JSON text (how a CSV holds a list) is decoded.

    Raises ``ValueError`` when the text is not JSON.
    """
    messages = row.get(column)
    return json.loads(messages) if isinstance(messages, str) else messages


def object_problem(row: Any) -> str | None:
    """Why ``row`` is not an object with named columns, or ``None`` when it is."""
    if not isinstance(row, dict):
        return f"expected an object with named columns, got {type(row).__name__}."
    return None


def check_row(row: Any, mapping: Mapping[str, str]) -> str | None:
    """Why ``row`` does not fit ``mapping``, or ``None`` when it does."""
    if problem := object_problem(row):
        return problem
    kind = mapping["type"]
    if kind == "chat":
        column = mapping["messages"]
        try:
            messages = messages_in(row, column)
        except ValueError:
            return f"`{column}` is text that is not a JSON list of messages."
        return _check_messages(column, messages)
    for key in ("prompt", "completion") if kind == "prompt_completion" else ("text",):
        column = mapping[key]
        value = row.get(column)
        if column not in row:
            return f"missing the `{column}` column."
        if not isinstance(value, str) or not value.strip():
            return f"`{column}` must be non-empty text."
    return None


def _check_messages(column: str, messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"`{column}` must be a non-empty list of {{role, content}} messages."
    for index, message in enumerate(messages):
        where = f"{column}[{index}]"
        if not isinstance(message, dict):
            return f"`{where}` must be an object with `role` and `content`."
        role = message.get("role")
        if role not in CHAT_ROLES:
            return f"`{where}.role` is {json.dumps(role)}: expected one of {', '.join(CHAT_ROLES)}."
        content = message.get("content")
        if not isinstance(content, str | list) and not (
            role == "assistant" and message.get("tool_calls")
        ):
            return f"`{where}.content` must be text."
    if not any(message.get("role") == "assistant" for message in messages):
        return f"`{column}` has no assistant message, so there is nothing to learn."
    return None


def iter_file_rows(path: Path, file_format: str) -> Iterator[tuple[int | None, Any]]:
    """Yield ``(line or None, row)`` from a ``jsonl``, ``json`` or ``csv`` file.

    Everything that stops the file from being read (bad JSON, bad UTF-8, broken CSV)
    raises :class:`FormatError`, at its line when one is known. CSV cells stay text, as
    written: a completion ``4`` is the text ``"4"``.
    """
    try:
        if file_format == "jsonl":
            yield from _jsonl_rows(path)
        elif file_format == "json":
            yield from _json_rows(path)
        else:
            text = path.read_text(encoding="utf-8")
            reader = csv.DictReader(io.StringIO(text, newline=""))
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as error:
        raise FormatError(
            f"the file is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8."
        ) from None
    except csv.Error as error:
        raise FormatError(f"the CSV cannot be read ({error}).") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise FormatError(
                    f"this line is not valid JSON ({error.msg}).", line_number
                ) from None


def _json_rows(path: Path) -> Iterator[tuple[None, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FormatError(f"the file is not valid JSON ({error.msg}).", error.lineno) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise FormatError('expected a JSON array of rows (or `{"data": [...]}`).', 1)
    for row in data:
        yield None, row
