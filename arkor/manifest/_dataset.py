"""Check a local dataset file before it is frozen: it exists, it parses, its rows fit a format.

Reads JSONL, JSON and CSV with the standard library, through :mod:`arkor._formats`: the
same reader and row checks the engine trains with, so a file that builds also trains.
Parquet is checked by its magic bytes, and its rows too when ``pyarrow`` happens to be
installed. Errors name the row (for JSONL, the line) so the user can go straight to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor._formats import (
    FILE_SUFFIXES,
    FormatError,
    check_row,
    default_mapping,
    detect_mapping,
    iter_file_rows,
    resolve_mapping,
)
from arkor.config import ConfigError, ConfigIssue, Location

__all__ = ["ROWS_CHECKED", "DatasetReport", "default_mapping", "inspect_dataset"]

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


def inspect_dataset(
    path: Path, display: str, dataset_format: str | dict[str, str]
) -> DatasetReport:
    """Check ``path`` against ``dataset_format`` (``"auto"``, a name, or a column mapping)."""
    file_format = FILE_SUFFIXES.get(path.suffix.lower())
    if file_format is None:
        raise _error(
            display,
            None,
            f"unsupported dataset file type `{path.suffix or '(none)'}`: use .jsonl, .json, .csv "
            "or .parquet.",
        )
    if file_format == "parquet":
        return _inspect_parquet(path, display, dataset_format)
    rows = iter_file_rows(path, file_format)
    mapping = resolve_mapping(dataset_format)
    issues: list[ConfigIssue] = []
    count = 0
    try:
        for count, (line, row) in enumerate(rows, start=1):
            if count > ROWS_CHECKED:
                continue
            if mapping is None:
                mapping = _detect(row, display, line)
            problem = check_row(row, mapping)
            if problem:
                issues.append(ConfigIssue(f"row {count}: {problem}", Location(display, line)))
                if len(issues) >= _MAX_ROW_ERRORS:
                    break
    except FormatError as error:
        raise _error(display, error.line, error.message) from None
    if issues:
        raise ConfigError(issues, message=f"The dataset {display} has rows Arkor cannot train on:")
    if count == 0 or mapping is None:
        raise _error(display, None, "the dataset is empty: it needs at least one row to train on.")
    return DatasetReport(mapping, count, file_format)


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
        mapping = resolve_mapping(dataset_format)
        return DatasetReport(mapping or "auto", None, "parquet")
    table = pq.read_table(path)
    rows = table.slice(0, ROWS_CHECKED).to_pylist()
    if not rows:
        raise _error(display, None, "the dataset is empty: it needs at least one row to train on.")
    mapping = resolve_mapping(dataset_format) or _detect(rows[0], display, None)
    issues = [
        ConfigIssue(f"row {index}: {problem}", Location(display))
        for index, row in enumerate(rows, start=1)
        if (problem := check_row(row, mapping))
    ][:_MAX_ROW_ERRORS]
    if issues:
        raise ConfigError(issues, message=f"The dataset {display} has rows Arkor cannot train on:")
    return DatasetReport(mapping, table.num_rows, "parquet")


def _detect(row: Any, display: str, line: int | None) -> dict[str, str]:
    try:
        return detect_mapping(row)
    except FormatError as error:
        raise _error(display, line, error.message) from None


def _error(display: str, line: int | None, message: str) -> ConfigError:
    return ConfigError(
        [ConfigIssue(message, Location(display, line))], message="The dataset cannot be used:"
    )
