"""arkor.toml in an editor: tombi completes, explains and checks it via the schema."""

from __future__ import annotations

import pytest

from ._client import JsonValue
from ._editor import Editor, plain_text

pytestmark = pytest.mark.lsp

VALID_TRAINER = """\
[trainer]
name = "demo"
model = "unsloth/gemma-3-270m-it"
max_steps = 10

[trainer.dataset]
type = "huggingface"
name = "org/data"
"""


def test_completion_in_trainer_offers_its_keys(toml_editor: Editor) -> None:
    """Typing inside ``[trainer]`` suggests the Trainer fields."""
    document = toml_editor.open('[trainer]\nname = "demo"\n█\n')

    labels = toml_editor.completion_labels(document)

    assert {"max_steps", "learning_rate", "lora", "dataset"} <= labels


def test_hover_on_key_shows_schema_description(
    toml_editor: Editor, trainer_schema: dict[str, JsonValue]
) -> None:
    """Hovering ``max_steps`` shows the description published in the schema."""
    document = toml_editor.open(VALID_TRAINER)

    hover = toml_editor.hover_text(document, "max_steps")

    assert plain_text(trainer_schema["properties"]["max_steps"]["description"]) in hover


def test_valid_document_has_no_diagnostics(toml_editor: Editor) -> None:
    """A correct config is not flagged, so diagnostics elsewhere are meaningful."""
    document = toml_editor.open(VALID_TRAINER)

    assert document.diagnostics == []


def test_misspelt_key_is_reported_on_its_line(toml_editor: Editor) -> None:
    """``max_step`` (for ``max_steps``) is flagged on its own line and nowhere else."""
    document = toml_editor.open(VALID_TRAINER.replace("max_steps =", "max_step ="))

    flagged_lines = {d["range"]["start"]["line"] for d in document.diagnostics}
    assert flagged_lines == {document.line_of("max_step =")}, document.diagnostics


def test_blob_dataset_completion_offers_blob_fields(toml_editor: Editor) -> None:
    """After ``type = "blob"`` the dataset table is completed with the blob fields.

    tombi narrows a ``oneOf`` only to the variants the table already satisfies.
    While the blob variant's required ``url`` is still missing no variant is
    satisfied, so it offers the keys of every variant (``name`` too); ``url``
    must be among them. Once ``url`` is present the table matches the blob
    variant alone, and the remaining suggestions are blob-only.
    """
    incomplete = toml_editor.open('[trainer.dataset]\ntype = "blob"\n█\n')
    assert "url" in toml_editor.completion_labels(incomplete)

    with_url = toml_editor.open(
        '[trainer.dataset]\ntype = "blob"\nurl = "https://example.com/data.jsonl"\n█\n'
    )
    labels = toml_editor.completion_labels(with_url)
    assert "token" in labels
    assert "name" not in labels
