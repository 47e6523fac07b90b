"""Editor-like helpers on top of the LSP client: open config documents, read results.

Documents are written with a ``█`` marking the cursor, so tests say where they
complete or hover instead of counting lines and columns by hand.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._client import JsonValue, LspClient

CURSOR = "█"


@dataclass(frozen=True)
class OpenDocument:
    """A document the server has analysed: its cursor and first published diagnostics."""

    uri: str
    text: str
    cursor: tuple[int, int] | None
    diagnostics: list[dict[str, JsonValue]]

    def line_of(self, fragment: str) -> int:
        """Zero-based number of the only line containing ``fragment``."""
        matches = [number for number, line in enumerate(self.text.splitlines()) if fragment in line]
        assert len(matches) == 1, f"{fragment!r} must occur on exactly one line, found {matches}"
        return matches[0]

    def position_of(self, fragment: str) -> tuple[int, int]:
        """Line and character of the start of ``fragment`` (on the only line containing it)."""
        line = self.line_of(fragment)
        return line, self.text.splitlines()[line].index(fragment)


@dataclass
class Editor:
    """Opens Arkor config documents bound to the schema in one language server."""

    client: LspClient
    directory: Path
    language_id: str
    file_name: str
    schema_header: str
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def open(self, body: str) -> OpenDocument:
        """Open the schema header plus ``body`` (which may hold one cursor marker).

        Returns once the server has published diagnostics for it: only then is
        the document (and its schema) loaded, and completion or hover sent
        earlier may find nothing.
        """
        text = self.schema_header + body
        cursor: tuple[int, int] | None = None
        if CURSOR in text:
            before = text[: text.index(CURSOR)]
            cursor = (before.count("\n"), len(before) - (before.rfind("\n") + 1))
            text = text.replace(CURSOR, "", 1)
        # Each document lives in its own folder under the config's real file name.
        path = self.directory / str(next(self._counter)) / self.file_name
        uri = self.client.open_document(path, self.language_id, text)
        diagnostics = self.client.wait_for_diagnostics(uri)
        return OpenDocument(uri=uri, text=text, cursor=cursor, diagnostics=diagnostics)

    def completion_labels(self, document: OpenDocument) -> set[str]:
        """Completion labels offered at the document's cursor."""
        assert document.cursor is not None, "document has no cursor marker"
        return self.client.completion_labels(document.uri, *document.cursor)

    def hover_text(self, document: OpenDocument, fragment: str) -> str:
        """Hover text at the start of ``fragment``, with markdown escapes removed."""
        return plain_text(self.client.hover_text(document.uri, *document.position_of(fragment)))


def plain_text(markdown: str) -> str:
    """Drop backslash escapes and collapse whitespace, so text compares as prose."""
    return " ".join(re.sub(r"\\(.)", r"\1", markdown).split())
