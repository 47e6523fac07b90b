"""Find where each key of a TOML document is written, so errors can say file:line:col.

``tomllib`` gives values but no positions. This scanner walks a document that
``tomllib`` has already accepted and records, for every key path, the position of the
key and of its value. It is lenient by design: syntax errors are ``tomllib``'s job.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]
Position = tuple[int, int]
"""1-based (line, column)."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}#\r\n]")


@dataclass(frozen=True)
class Span:
    """Where a key and its value start."""

    key: Position
    value: Position


def toml_positions(text: str) -> dict[KeyPath, Span]:
    """Map every key path in ``text`` (tables, keys, array items) to its position."""
    return _Scanner(text).scan()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.spans: dict[KeyPath, Span] = {}
        self.array_tables: dict[KeyPath, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def scan(self) -> dict[KeyPath, Span]:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.spans
            if self.text.startswith("[", self.pos):
                table = self._header()
            else:
                self._keyval(table)

    def _header(self) -> KeyPath:
        start = self.pos
        is_array = self.text.startswith("[[", self.pos)
        self.pos += 2 if is_array else 1
        parts = self._key()
        self.pos += 2 if is_array else 1
        path: KeyPath = ()
        for name, _ in parts:
            path = (*path, name)
            self._record(path, start, start)
        if is_array:
            index = self.array_tables.get(path, -1) + 1
            self.array_tables[path] = index
            path = (*path, index)
            self._record(path, start, start, overwrite=True)
        return path

    def _keyval(self, table: KeyPath) -> None:
        parts = self._key()
        self._skip_blank()
        if self.text.startswith("=", self.pos):
            self.pos += 1
        self._skip_blank()
        value_start = self.pos
        path = table
        for name, key_start in parts:
            path = (*path, name)
            self._record(path, key_start, value_start)
        self._value(path)

    def _key(self) -> list[tuple[str, int]]:
        parts: list[tuple[str, int]] = []
        while True:
            self._skip_blank()
            start = self.pos
            char = self.text[self.pos : self.pos + 1]
            if char in ('"', "'"):
                raw = self._string_token()
                parts.append((tomllib.loads(f"{raw} = 0").popitem()[0], start))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                end = match.end() if match else self.pos + 1
                parts.append((self.text[self.pos : end], start))
                self.pos = end
            self._skip_blank()
            if not self.text.startswith(".", self.pos):
                return parts
            self.pos += 1

    def _value(self, path: KeyPath) -> None:
        char = self.text[self.pos : self.pos + 1]
        if char == "{":
            self._inline_table(path)
        elif char == "[":
            self._array(path)
        elif char in ('"', "'"):
            self._string_token()
        else:
            match = _SCALAR_END.search(self.text, self.pos)
            self.pos = match.start() if match else len(self.text)

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text) or self.text[self.pos] == "}":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            self._keyval(path)

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text) or self.text[self.pos] == "]":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            item = (*path, index)
            self._record(item, self.pos, self.pos)
            self._value(item)
            index += 1

    def _string_token(self) -> str:
        start = self.pos
        quote = self.text[self.pos]
        triple = quote * 3
        if self.text.startswith(triple, self.pos):
            self.pos += 3
            while self.pos < len(self.text) and not self.text.startswith(triple, self.pos):
                self.pos += 2 if quote == '"' and self.text[self.pos] == "\\" else 1
            self.pos += 3
            for _ in range(2):  # up to two quotes may sit right before the closing delimiter
                if self.text.startswith(quote, self.pos):
                    self.pos += 1
        else:
            self.pos += 1
            while self.pos < len(self.text):
                char = self.text[self.pos]
                if quote == '"' and char == "\\":
                    self.pos += 2
                    continue
                self.pos += 1
                if char == quote or char == "\n":
                    break
        return self.text[start : self.pos]

    def _skip_blank(self, *, newlines: bool = False) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _record(self, path: KeyPath, key: int, value: int, *, overwrite: bool = False) -> None:
        if overwrite or path not in self.spans:
            self.spans[path] = Span(self.position(key), self.position(value))
