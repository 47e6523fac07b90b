"""Check a local dataset file before it is frozen: it exists, it parses, its rows fit a format.

Reads JSONL, JSON and CSV with the standard library; Parquet is checked by its magic
bytes, and its rows too when ``pyarrow`` happens to be installed. Errors name the row
(for JSONL, the line) so the user can go straight to it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor.config import ConfigError, ConfigIssue, Location

FORMATS = ("chat", "prompt_completion", "text")
CHAT_ROLES = ("system", "user", "assistant", "tool")
ROWS_CHECKED = 1000
"""Rows checked in full; the rest are counted (and hashed by the caller) but not parsed."""
_MAX_ROW_ERRORS = 20


@dataclass(frozen=True)
class DatasetReport:
    """What checking the file found."""

    format: dict[str, str] | str
    """The resolved format mapping (e.g. ``{"type": "chat", "messages": "messages"}``), or
    ``"auto"`` when the rows could not be read here (Parquet without pyarrow)."""
    rows: int | None
    """Row count, when it is cheap to know."""
    file_format: str
    """``jsonl``, ``json``, ``csv`` or ``parquet``."""


_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}


def inspect_dataset(
    path: Path, display: str, dataset_format: str | dict[str, str]
) -> DatasetReport:
    """Check ``path`` against ``dataset_format`` (``"auto"``, a name, or a column mapping)."""
    file_format = _SUFFIXES.get(path.suffix.lower())
    if file_format is None:
        raise _error(
            display,
            None,
            f"unsupported dataset file type `{path.suffix or '(none)'}`: use .jsonl, .json, .csv "
            "or .parquet.",
        )
    if file_format == "parquet":
        return _inspect_parquet(path, display, dataset_format)
    rows = _iter_rows(path, display, file_format)
    mapping = _mapping(dataset_format)
    issues: list[ConfigIssue] = []
    count = 0
    try:
        for count, (line, row) in enumerate(rows, start=1):
            if count > ROWS_CHECKED:
                continue
            if mapping is None:
                mapping = _detect(row, display, line)
            problem = _check_row(row, mapping)
            if problem:
                issues.append(ConfigIssue(f"row {count}: {problem}", Location(display, line)))
                if len(issues) >= _MAX_ROW_ERRORS:
                    break
    except UnicodeDecodeError as error:
        raise _error(
            display,
            None,
            f"the file is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8.",
        ) from None
    except csv.Error as error:
        raise _error(display, None, f"the CSV cannot be read ({error}).") from None
    if issues:
        raise ConfigError(issues, message=f"The dataset {display} has rows Arkor cannot train on:")
    if count == 0 or mapping is None:
        raise _error(display, None, "the dataset is empty: it needs at least one row to train on.")
    return DatasetReport(mapping, count, file_format)


def _iter_rows(path: Path, display: str, file_format: str) -> Iterator[tuple[int | None, Any]]:
    """Yield ``(line or None, row)`` pairs; a row that does not parse raises at its line."""
    if file_format == "jsonl":
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise _error(
                        display, line_number, f"this line is not valid JSON ({error.msg})."
                    ) from None
    elif file_format == "json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise _error(
                display, error.lineno, f"the file is not valid JSON ({error.msg})."
            ) from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise _error(display, 1, 'expected a JSON array of rows (or `{"data": [...]}`).')
        for row in data:
            yield None, row
    else:
        text = path.read_text(encoding="utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            yield reader.line_num, row


def _inspect_parquet(
    path: Path, display: str, dataset_format: str | dict[str, str]
) -> DatasetReport:
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(max(path.stat().st_size - 4, 4))
        tail = handle.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        raise _error(display, None, "this is not a Parquet file (its PAR1 markers are missing).")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        mapping = _mapping(dataset_format)
        return DatasetReport(mapping or "auto", None, "parquet")
    table = pq.read_table(path)
    rows = table.slice(0, ROWS_CHECKED).to_pylist()
    if not rows:
        raise _error(display, None, "the dataset is empty: it needs at least one row to train on.")
    mapping = _mapping(dataset_format) or _detect(rows[0], display, None)
    issues = [
        ConfigIssue(f"row {index}: {problem}", Location(display))
        for index, row in enumerate(rows, start=1)
        if (problem := _check_row(row, mapping))
    ][:_MAX_ROW_ERRORS]
    if issues:
        raise ConfigError(issues, message=f"The dataset {display} has rows Arkor cannot train on:")
    return DatasetReport(mapping, table.num_rows, "parquet")


def _mapping(dataset_format: str | dict[str, str]) -> dict[str, str] | None:
    """Normalise a format name or table into a full column mapping; ``None`` for ``auto``."""
    if isinstance(dataset_format, dict):
        return dict(dataset_format)
    return None if dataset_format == "auto" else default_mapping(dataset_format)


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


def _detect(row: Any, display: str, line: int | None) -> dict[str, str]:
    if not isinstance(row, dict):
        raise _error(
            display, line, f"row 1 is {type(row).__name__}, expected an object with named columns."
        )
    if "messages" in row:
        return default_mapping("chat")
    if "prompt" in row and "completion" in row:
        return default_mapping("prompt_completion")
    if "text" in row:
        return default_mapping("text")
    columns = ", ".join(f"`{key}`" for key in row) or "none"
    raise _error(
        display,
        line,
        f"cannot tell the format of row 1 (columns: {columns}): expected `messages`, "
        "`prompt` + `completion`, or `text`. If your columns are named differently, map them, "
        'e.g. `dataset_format = { type = "prompt_completion", prompt = "question", completion = "answer" }`.',
    )


def _check_row(row: Any, mapping: dict[str, str]) -> str | None:
    """Why ``row`` does not fit ``mapping``, or ``None`` when it does."""
    if not isinstance(row, dict):
        return f"expected an object with named columns, got {type(row).__name__}."
    kind = mapping["type"]
    if kind == "chat":
        column = mapping["messages"]
        messages = row.get(column)
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError:
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


def _error(display: str, line: int | None, message: str) -> ConfigError:
    return ConfigError(
        [ConfigIssue(message, Location(display, line))], message="The dataset cannot be used:"
    )
