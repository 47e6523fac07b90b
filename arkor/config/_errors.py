"""Located config errors: every issue knows its file, line, column and key path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arkor.errors import ArkorError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """A position in a config source: a file (or ``--set``) with 1-based line and column."""

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column or 1}"


def format_key_path(path: KeyPath) -> str:
    """Render ``("trainer", "lora", "r")`` as ``trainer.lora.r`` and indexes as ``[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config document."""

    message: str
    location: Location
    path: KeyPath = ()
    suggestion: str | None = None

    def __str__(self) -> str:
        key = f" {format_key_path(self.path)}:" if self.path else ""
        hint = f" Did you mean `{self.suggestion}`?" if self.suggestion else ""
        return f"{self.location}:{key} {self.message}{hint}"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form printed by ``arkor validate --format json``."""
        return {
            "file": self.location.source,
            "line": self.location.line,
            "column": self.location.column,
            "path": format_key_path(self.path) if self.path else None,
            "message": self.message,
            "suggestion": self.suggestion,
        }


class ConfigError(ArkorError):
    """The config cannot be used; carries every issue found, not just the first.

    A problem that has no place in a document (no config file found, two candidates)
    is a ``ConfigError`` with a message and no issues.
    """

    exit_code = 2

    def __init__(self, issues: Sequence[ConfigIssue] = (), *, message: str = "") -> None:
        self.issues = list(issues)
        self.message = message
        super().__init__(str(self))

    def issues_json(self) -> list[dict[str, Any]]:
        """Each issue as ``arkor validate --format json`` prints it; one without a place when
        the error has no located issue (no config file found, say)."""
        return [issue.to_json() for issue in self.issues] or [
            {
                "file": None,
                "line": None,
                "column": None,
                "path": None,
                "message": self.message,
                "suggestion": None,
            }
        ]

    def __str__(self) -> str:
        if not self.issues:
            return self.message
        count = len(self.issues)
        headline = self.message or (
            "The config has an error:" if count == 1 else f"The config has {count} errors:"
        )
        return "\n".join([headline, *(f"  {issue}" for issue in self.issues)])
