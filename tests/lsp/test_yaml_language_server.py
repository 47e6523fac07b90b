"""arkor.yaml in an editor: yaml-language-server completes, explains and checks it."""

from __future__ import annotations

import pytest

from ._client import JsonValue
from ._editor import Editor, plain_text

pytestmark = pytest.mark.lsp

VALID_TRAINER = """\
trainer:
  name: demo
  model: unsloth/gemma-3-270m-it
  dataset:
    type: huggingface
    name: org/data
  max_steps: 10
"""


def test_completion_in_trainer_offers_its_keys(yaml_editor: Editor) -> None:
    """Typing inside ``trainer:`` suggests the Trainer fields."""
    document = yaml_editor.open("trainer:\n  name: demo\n  █\n")

    labels = yaml_editor.completion_labels(document)

    assert {"max_steps", "learning_rate", "lora", "dataset"} <= labels


def test_hover_on_key_shows_schema_description(
    yaml_editor: Editor, trainer_schema: dict[str, JsonValue]
) -> None:
    """Hovering ``max_steps`` shows the description published in the schema."""
    document = yaml_editor.open(VALID_TRAINER)

    hover = yaml_editor.hover_text(document, "max_steps")

    assert plain_text(trainer_schema["properties"]["max_steps"]["description"]) in hover


def test_valid_document_has_no_diagnostics(yaml_editor: Editor) -> None:
    """A correct config is not flagged, so diagnostics elsewhere are meaningful."""
    document = yaml_editor.open(VALID_TRAINER)

    assert document.diagnostics == []


def test_misspelt_key_is_reported_on_its_line(yaml_editor: Editor) -> None:
    """``max_step`` (for ``max_steps``) is flagged on its own line and nowhere else."""
    document = yaml_editor.open(VALID_TRAINER.replace("max_steps:", "max_step:"))

    flagged_lines = {d["range"]["start"]["line"] for d in document.diagnostics}
    assert flagged_lines == {document.line_of("max_step:")}, document.diagnostics


def test_blob_dataset_completion_offers_only_blob_fields(yaml_editor: Editor) -> None:
    """After ``type: blob`` the dataset union narrows to the blob variant."""
    document = yaml_editor.open("trainer:\n  dataset:\n    type: blob\n    █\n")

    labels = yaml_editor.completion_labels(document)

    assert "url" in labels
    assert "name" not in labels
