"""The published schema and example are generated from the models, fresh, and editor-safe.

Set ``ARKOR_UPDATE_SCHEMA=1`` to rewrite ``schemas/arkor.schema.json`` and
``arkor.toml.example`` from the models instead of failing when they are stale.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from arkor.config import (
    SCHEMA_URL,
    ArkorConfig,
    ConfigError,
    generate_schema,
    load_config,
    render_schema,
)
from arkor.config._example import render_example
from tests.utils.projects import write

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "arkor.schema.json"
EXAMPLE_FILE = REPO / "arkor.toml.example"
REGENERATE = "ARKOR_UPDATE_SCHEMA=1 python -m pytest tests/config/test_schema.py"

DRAFT_07_KEYWORDS = {
    "$schema", "$id", "title", "description", "type", "properties", "additionalProperties",
    "required", "enum", "const", "default", "examples", "items", "oneOf", "anyOf",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems",
}  # fmt: skip


def check_generated(path: Path, generated: str) -> None:
    if os.environ.get("ARKOR_UPDATE_SCHEMA") == "1":
        path.write_text(generated, encoding="utf-8")
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    assert committed == generated, (
        f"{path.name} is stale; regenerate it with `{REGENERATE}` and commit it."
    )


def test_committed_schema_is_fresh() -> None:
    check_generated(SCHEMA_FILE, render_schema())


def test_committed_example_is_fresh() -> None:
    check_generated(EXAMPLE_FILE, render_example())


def walk(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in the tree, with a JSON-pointer-ish path for messages."""
    if isinstance(node, dict):
        yield path, node
        for key in ("properties",):
            for name, child in node.get(key, {}).items():
                yield from walk(child, f"{path}/{key}/{name}")
        for key in ("oneOf", "anyOf"):
            for index, child in enumerate(node.get(key, [])):
                yield from walk(child, f"{path}/{key}/{index}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}/items")


def test_schema_is_valid_draft_07_and_uses_only_its_common_keywords() -> None:
    schema = generate_schema()
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, node in walk(schema):
        unknown = set(node) - DRAFT_07_KEYWORDS
        assert not unknown, (
            f"{path} uses {unknown}, which taplo/tombi/yaml-language-server may not understand"
        )


def test_every_object_forbids_unknown_keys_and_every_property_is_described() -> None:
    schema = generate_schema()
    for path, node in walk(schema):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, path
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}/properties/{name} has no description"


def test_schema_has_no_refs_or_null_branches() -> None:
    text = render_schema()
    assert '"$ref"' not in text and '"$defs"' not in text
    assert '"type": "null"' not in text


def test_dataset_is_a_oneof_discriminated_by_const_type() -> None:
    dataset = generate_schema()["properties"]["trainer"]["properties"]["dataset"]
    branches = {branch["properties"]["type"]["const"]: branch for branch in dataset["oneOf"]}
    assert set(branches) == {"huggingface", "blob", "file"}
    assert set(branches["blob"]["properties"]) == {"type", "url", "token"}
    assert set(branches["huggingface"]["properties"]) == {"type", "name", "split", "subset"}
    assert set(branches["file"]["properties"]) == {"type", "path"}
    for branch in branches.values():
        assert "type" in branch["required"]


def test_model_examples_name_real_ids() -> None:
    model = generate_schema()["properties"]["trainer"]["properties"]["model"]
    assert "unsloth/gemma-4-E4B-it" in model["examples"]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in model["examples"]


def test_schema_has_title_defaults_and_examples() -> None:
    schema = generate_schema()
    trainer = schema["properties"]["trainer"]["properties"]
    assert schema["title"] == "Arkor configuration"
    assert schema["$id"] == SCHEMA_URL
    assert trainer["learning_rate"]["default"] == 2e-4
    assert trainer["lora"]["properties"]["r"]["default"] == 16
    assert trainer["lr_scheduler_type"]["enum"][0] == "linear"
    assert trainer["max_steps"]["examples"]


CORPUS: list[dict[str, Any]] = [
    {"trainer": {"name": "a", "model": "m", "dataset": {"type": "huggingface", "name": "x/y"}}},
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d.jsonl"},
            "max_steps": 0,
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "blob", "url": "https://e.com/d.csv"},
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "blob", "url": "ftp://e.com/d.csv"},
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "blob", "url": "https://e", "token": "x"},
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "lora": {"dropout": 1.0},
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "lora": {"target_modules": ["q"]},
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "dataset_split": 0,
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "dataset_format": {"type": "text"},
        }
    },
    {"trainer": {"name": "", "model": "m", "dataset": {"type": "file", "path": "d"}}},
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "optim": "Adam W",
        }
    },
    {
        "trainer": {
            "name": "a",
            "model": "m",
            "dataset": {"type": "file", "path": "d"},
            "learning_rate": 1,
        }
    },
    {"trainer": {"name": "a", "model": "m", "dataset": {"type": "file", "path": "d"}, "seed": -1}},
    {
        "trainer": {"name": "a", "model": "m", "dataset": {"type": "file", "path": "d"}},
        "cloud": {"url": "http://h:1"},
    },
    {"trainer": {"name": "a", "model": "m", "dataset": {"type": "file", "path": "d"}}, "extra": 1},
]


@pytest.mark.parametrize("document", CORPUS, ids=lambda doc: json.dumps(doc)[-60:])
def test_schema_and_models_agree(document: dict[str, Any]) -> None:
    """The CLI checks with the schema, then builds models; neither may accept what the other refuses."""
    from pydantic import ValidationError

    schema_ok = Draft7Validator(generate_schema()).is_valid(document)
    try:
        ArkorConfig.model_validate(document, strict=True)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert schema_ok == model_ok


def test_example_is_a_valid_config(project: Path) -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    tomllib.loads(text)
    write(project, "arkor.toml", text)
    assert load_config().config.trainer.name == "support-bot-v1"


def test_every_alternative_in_the_example_validates_when_uncommented(project: Path) -> None:
    """Uncommenting an optional key in the example gives a valid config."""
    key_line = re.compile(r"^# ([a-z0-9_]+) = ")
    variant_keys = {"type", "url", "token", "path", "extends"}
    body = [
        line[2:] if (match := key_line.match(line)) and match[1] not in variant_keys else line
        for line in EXAMPLE_FILE.read_text(encoding="utf-8").splitlines()
    ]
    write(project, "arkor.toml", "\n".join(body))
    try:
        trainer = load_config().config.trainer
    except ConfigError as error:
        pytest.fail(str(error))
    assert trainer.max_steps is not None
    assert trainer.dataset_split is not None
    assert trainer.callbacks.on_failed is not None


def test_catalog_matches_config_file_names_and_schema_url() -> None:
    catalog = json.loads((REPO / "schemas" / "catalog.json").read_text(encoding="utf-8"))
    (entry,) = catalog["schemas"]
    assert set(entry["fileMatch"]) == {"arkor.toml", "arkor.yaml", "arkor.yml"}
    assert entry["url"] == SCHEMA_URL
