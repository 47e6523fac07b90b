"""Generate the published JSON Schema from the config models, and load the shipped copy.

Editors differ in what they understand: taplo (Even Better TOML) knows draft-07 only,
tombi applies 2020-12, yaml-language-server follows ``$schema``. The generator therefore
emits plain draft-07 with every sub-model inlined where it is used (each is used once, and
draft-07 ignores a ``description`` beside a ``$ref``, which would hide hover text), ``oneOf``
discriminated by a ``const`` type, no ``null`` branches (TOML has no null), no OpenAPI
``discriminator``, and no per-property titles.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILENAME = "arkor.schema.json"
SCHEMA_URL = (
    "https://raw.githubusercontent.com/arkorlab/arkor-python/main/schemas/arkor.schema.json"
)
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

JsonSchema = dict[str, Any]


def generate_schema() -> JsonSchema:
    """Build the schema from :class:`ArkorConfig`, post-processed for every editor."""
    from arkor.config._models import ArkorConfig

    raw = ArkorConfig.model_json_schema(mode="validation")
    definitions = raw.pop("$defs", {})
    return {"$schema": DRAFT_07, "$id": SCHEMA_URL, **_clean(_inline(raw, definitions))}


def render_schema(schema: JsonSchema | None = None) -> str:
    """The schema as committed: two-space JSON, keys in a fixed order, trailing newline."""
    return json.dumps(schema or generate_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_path() -> Path:
    """Where the schema that ships with this installation lives."""
    from arkor._resources import schemas_dir

    return schemas_dir() / SCHEMA_FILENAME


@cache
def load_shipped_schema() -> JsonSchema:
    """The shipped schema, read once: what editors see is what ``arkor validate`` checks."""
    schema: JsonSchema = json.loads(shipped_schema_path().read_text(encoding="utf-8"))
    return schema


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace every ``$ref`` with the definition it names; siblings (a description) win."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = definitions[ref.rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        node = {**target, **siblings}
    return {key: _inline(value, definitions) for key, value in node.items()}


def _clean(node: Any) -> Any:
    """Rewrite pydantic's output into the draft-07 subset every editor understands."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    node.pop("discriminator", None)
    if node.get("default", ...) is None:
        del node["default"]
    for combinator in ("anyOf", "oneOf"):
        branches = node.get(combinator)
        if branches is None:
            continue
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del node[combinator]
            node = {**kept[0], **node}
        else:
            node[combinator] = kept
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["properties"] = {
            name: {key: value for key, value in _clean(prop).items() if key != "title"}
            for name, prop in properties.items()
        }
    for key in ("items", "additionalProperties", "anyOf", "oneOf"):
        if key in node and isinstance(node[key], list | dict):
            node[key] = _clean(node[key])
    return node
