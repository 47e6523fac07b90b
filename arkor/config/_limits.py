"""Bounds on what a config document may be, so hostile input fails fast with a located error.

A real config nests four levels and extends two or three files. These limits sit far
above that, and far below what would exhaust the stack or the memory of the process
that reads the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from arkor.config._errors import KeyPath

MAX_DEPTH = 32
"""Tables and arrays nested inside one another, the document itself counting as one."""
MAX_EXTENDS = 16
"""Files in one ``extends`` chain, the config itself included."""
MAX_ALIAS_NODES = 10_000
"""Values that YAML aliases (``*name``) may add to a document by repeating an anchor."""

DEPTH_HINT = (
    f"Arkor reads at most {MAX_DEPTH} levels (a config needs about four). Flatten this value."
)


def toml_nesting_overflow(text: str, start_depth: int = 1) -> int | None:
    """The offset of the first ``[``, ``{`` or key ``.`` in TOML ``text`` that nests too deep.

    A lexical scan (strings and comments skipped, nothing else parsed), run before
    ``tomllib``, whose parser recurses once per bracket and takes time quadratic in the
    parts of a dotted key (``a.a.a…``); either would overflow the stack or stall first.
    """
    depth = start_depth
    dots = 0  # in the key (or value) being read: a float has one, a key one per part
    pos = 0
    length = len(text)
    while pos < length:
        char = text[pos]
        if char in "[{":
            depth += 1
            dots = 0
            if depth > MAX_DEPTH:
                return pos
        elif char in "]}":
            depth = max(depth - 1, start_depth)
            dots = 0
        elif char in "=,\n":
            dots = 0
        elif char == ".":
            dots += 1
            if dots >= MAX_DEPTH:
                return pos
        elif char == "#":
            end = text.find("\n", pos)
            pos = length if end < 0 else end
            continue
        elif char in "\"'":
            pos = _skip_toml_string(text, pos)
            continue
        pos += 1
    return None


def _skip_toml_string(text: str, pos: int) -> int:
    """The offset just past the string that starts at ``pos`` (or the end of its line)."""
    quote = text[pos]
    escapes = quote == '"'
    if text.startswith(quote * 3, pos):
        end = pos + 3
        while end < len(text) and not text.startswith(quote * 3, end):
            end += 2 if escapes and text[end] == "\\" else 1
        return end + 3
    end = pos + 1
    while end < len(text) and text[end] not in (quote, "\n"):
        end += 2 if escapes and text[end] == "\\" else 1
    return end + 1


def too_deep(data: Any) -> KeyPath | None:
    """The key path of the first value nested deeper than :data:`MAX_DEPTH`, else ``None``.

    Iterative, so it is safe on any document a parser could return.
    """
    stack: list[tuple[Any, KeyPath]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH and isinstance(node, dict | list):
            return path
        stack.extend(_children(node, path))
    return None


def _children(node: Any, path: KeyPath) -> Iterator[tuple[Any, KeyPath]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield value, (*path, key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield value, (*path, index)
