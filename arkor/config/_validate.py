"""Check a composed document against the published schema, then build the models.

The schema check runs first and reports what an editor would report, every error at
once, each located at the file, line and column that holds it. Only a document that
passes becomes an :class:`ArkorConfig`.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arkor.config._errors import ConfigError, ConfigIssue, KeyPath, format_key_path
from arkor.config._load import RawConfig, SourceFile, describe_value, load_raw
from arkor.config._models import ArkorConfig
from arkor.config._schema import load_shipped_schema

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from jsonschema.exceptions import ValidationError as SchemaError

_SECRET_HINT = (
    "a literal secret would be frozen into the build manifest and leak into logs. Put it "
    'in an environment variable and name that here: `token = "${env:DATASET_TOKEN}"`.'
)
_CALLBACK_HINT = (
    'expected a dotted import path such as `"my_project.callbacks:on_log"` (or '
    '`"my_project.callbacks.on_log"`).'
)


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config and everything known about where it came from."""

    config: ArkorConfig
    raw: RawConfig

    @property
    def path(self) -> Path:
        """The main config file."""
        return self.raw.path

    @property
    def root(self) -> Path:
        """The project root (see :attr:`RawConfig.root`)."""
        return self.raw.root

    @property
    def sources(self) -> list[SourceFile]:
        """Every file that contributed, the main config first, then what it extends."""
        return self.raw.sources

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``--set`` overrides applied, in order."""
        return self.raw.overrides


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load, compose and validate a config; raise :class:`ConfigError` listing every issue.

    ``path`` defaults to the config discovered in ``cwd`` (``arkor.toml``, ``arkor.yaml``
    or ``[tool.arkor]`` in ``pyproject.toml``). ``overrides`` are ``--set`` strings such
    as ``"trainer.max_steps=10"``.

    A document the models accept in strict mode is one the published schema accepts too
    (the schema is generated from them; ``tests/config/test_schema.py`` holds them to
    it), so that case skips the schema pass and the ~30 ms import of ``jsonschema``.
    Anything else is checked against the schema, so errors read as the editor shows them.
    """
    raw = load_raw(Path(path) if path is not None else None, overrides, cwd=cwd, env=env)
    if raw.references:
        typed_references(raw)
    from pydantic import ValidationError

    try:
        return LoadedConfig(ArkorConfig.model_validate(raw.data, strict=True), raw)
    except ValidationError:
        pass  # explained below, in the schema's words
    issues = [_with_reference(issue, raw) for issue in schema_issues(raw)]
    if issues:
        raise ConfigError(issues)
    try:
        config = ArkorConfig.model_validate(raw.data)
    except ValidationError as error:
        raise ConfigError(
            [
                ConfigIssue(
                    item["msg"],
                    raw.locate(_doc_path(item["loc"], raw.data)),
                    _doc_path(item["loc"], raw.data),
                )
                for item in error.errors()
            ]
        ) from None
    return LoadedConfig(config, raw)


def typed_references(raw: RawConfig) -> None:
    """Give each whole ``${env:…}`` value the type the schema expects there, in place.

    Environment variables are text, so ``max_steps = "${env:STEPS:-7}"`` yields ``"7"``.
    Where the schema takes no string but a number or a boolean, the text is read as a
    TOML literal (as ``--set`` values are) and kept when it has one of those types;
    otherwise it stays a string and the schema error says where it came from.
    """
    schema = load_shipped_schema()
    for path in raw.references:
        parent: Any = raw.data
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        kinds = _schema_types(schema, path)
        if not isinstance(value, str) or not kinds or "string" in kinds:
            continue
        try:
            literal = tomllib.loads(f"v = {value}")["v"] if "\n" not in value else None
        except (tomllib.TOMLDecodeError, ValueError):
            continue
        if _json_type(literal) in kinds or (isinstance(literal, int) and "number" in kinds):
            parent[path[-1]] = literal


def _schema_types(schema: dict[str, Any], path: KeyPath) -> set[str]:
    """The JSON types the schema allows at ``path`` (through every ``anyOf``/``oneOf``)."""
    nodes = _alternatives([schema])
    for part in path:
        found: list[dict[str, Any]] = []
        for node in nodes:
            if isinstance(part, str) and part in node.get("properties", {}):
                found.append(node["properties"][part])
            elif isinstance(part, int) and isinstance(node.get("items"), dict):
                found.append(node["items"])
        nodes = _alternatives(found)
    kinds: set[str] = set()
    for node in nodes:
        declared = node.get("type")
        kinds.update(declared if isinstance(declared, list) else [declared] if declared else [])
        if any(isinstance(v, str) for v in [node.get("const"), *node.get("enum", [])]):
            kinds.add("string")
    return kinds


def _alternatives(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    expanded: list[dict[str, Any]] = []
    pending = list(nodes)
    while pending:
        node = pending.pop()
        expanded.append(node)
        for key in ("anyOf", "oneOf", "allOf"):
            pending.extend(branch for branch in node.get(key, []) if isinstance(branch, dict))
    return expanded


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return None


def _with_reference(issue: ConfigIssue, raw: RawConfig) -> ConfigIssue:
    """Say which ``${env:…}`` reference gave a bad value."""
    reference = raw.references.get(issue.path)
    if reference is None:
        return issue
    return replace(
        issue,
        message=f"{issue.message} The value comes from `{reference}`: set the variable (or the "
        "default after `:-`) to a valid value.",
    )


def schema_issues(raw: RawConfig) -> Iterator[ConfigIssue]:
    """Every schema violation in ``raw``, located, in document order."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(load_shipped_schema())
    issues: list[ConfigIssue] = []
    for error in validator.iter_errors(raw.data):
        issues.extend(_explain(error, raw))
    unique = {(str(issue.location), issue.message): issue for issue in issues}
    yield from sorted(unique.values(), key=_document_order)


def _explain(error: SchemaError, raw: RawConfig) -> Iterator[ConfigIssue]:
    """Turn one jsonschema error into issues a person can act on."""
    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key in allowed:
                continue
            suggestion = _closest(key, allowed)
            where = f"in `{format_key_path(path)}`" if path else "at the top level"
            known = "" if suggestion else f" Allowed keys: {', '.join(allowed)}."
            yield ConfigIssue(
                f"unknown key `{key}` {where}.{known}",
                raw.locate((*path, key), at_key=True),
                (*path, key),
                suggestion,
            )
    elif kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        where = f"in `{format_key_path(path)}`" if path else "at the top level"
        yield ConfigIssue(
            f"missing required key `{missing}` {where}.",
            raw.locate(path, at_key=True),
            path,
        )
    elif kind == "oneOf" and isinstance(instance, dict) and "type" in _branch_types(schema):
        yield from _explain_tagged_union(error, raw, path, schema, instance)
    elif kind == "pattern" and path and path[-1] == "token":
        yield ConfigIssue(_SECRET_HINT, raw.locate(path), path)
    elif kind == "pattern" and len(path) >= 2 and path[-2] == "callbacks":
        yield ConfigIssue(
            f"{_CALLBACK_HINT} Got {describe_value(instance)}.", raw.locate(path), path
        )
    elif kind == "anyOf" and (branch := _matching_branch(schema, instance)) is not None:
        for sub in error.context or ():
            if sub.schema_path and sub.schema_path[0] == branch:
                yield from _explain(sub, raw)
    elif kind == "anyOf":
        yield ConfigIssue(
            f"expected {_expected(schema)}, got {describe_value(instance)}.", raw.locate(path), path
        )
    else:
        yield ConfigIssue(_plain_message(error), raw.locate(path), path)


def _explain_tagged_union(
    error: SchemaError,
    raw: RawConfig,
    path: KeyPath,
    schema: dict[str, Any],
    instance: dict[str, Any],
) -> Iterator[ConfigIssue]:
    """Report a ``oneOf`` by its ``type`` tag: the errors of the branch the user chose."""
    tags = _branch_types(schema)["type"]
    tag = instance.get("type")
    if tag not in tags:
        if "type" not in instance:
            yield ConfigIssue(
                f"missing required key `type`; set it to one of {_quoted(tags)}.",
                raw.locate(path, at_key=True),
                path,
            )
        else:
            yield ConfigIssue(
                f"`type` must be one of {_quoted(tags)}, got {describe_value(tag)}.",
                raw.locate((*path, "type")),
                (*path, "type"),
                _closest(str(tag), tags),
            )
        return
    branch = tags.index(tag)
    for sub in error.context or ():
        if sub.schema_path and sub.schema_path[0] == branch:
            yield from _explain(sub, raw)


def _branch_types(schema: dict[str, Any]) -> dict[str, list[str]]:
    """For a ``oneOf`` of objects tagged by a ``const`` property, that property's values."""
    tags: list[str] = []
    for branch in schema.get("oneOf", []):
        const = branch.get("properties", {}).get("type", {}).get("const")
        if const is None:
            return {}
        tags.append(const)
    return {"type": tags} if tags else {}


def _matching_branch(schema: dict[str, Any], instance: Any) -> int | None:
    """The one ``anyOf`` branch of the same JSON type as ``instance``, if exactly one is."""
    if isinstance(instance, bool):
        kinds = {"boolean"}
    elif isinstance(instance, int | float):
        kinds = {"number", "integer"}
    elif isinstance(instance, str):
        kinds = {"string"}
    elif isinstance(instance, list):
        kinds = {"array"}
    elif isinstance(instance, dict):
        kinds = {"object"}
    else:
        return None
    matches = [
        index
        for index, branch in enumerate(schema.get("anyOf", []))
        if ("object" if "oneOf" in branch else branch.get("type")) in kinds
    ]
    return matches[0] if len(matches) == 1 else None


def _expected(schema: dict[str, Any]) -> str:
    """Describe the alternatives of an ``anyOf`` in words."""
    options: list[str] = []
    for branch in schema.get("anyOf", []):
        if "enum" in branch:
            options.append(f"one of {_quoted(branch['enum'])}")
        elif "oneOf" in branch:
            tags = _branch_types(branch).get("type", [])
            options.append(f"a table with `type` one of {_quoted(tags)}")
        elif branch.get("type") == "array":
            options.append("an array")
        elif branch.get("type") == "number":
            low, high = branch.get("exclusiveMinimum"), branch.get("exclusiveMaximum")
            bounds = f" between {low} and {high}" if low is not None and high is not None else ""
            options.append(f"a number{bounds}")
        elif "type" in branch:
            options.append(f"a {branch['type']}")
    return " or ".join(options) or "another value"


def _plain_message(error: SchemaError) -> str:
    """A short sentence for the simple validators; jsonschema's own text otherwise."""
    value = error.validator_value
    instance = error.instance
    got = describe_value(instance)
    messages = {
        "type": f"expected {_article(value)}, got {got}.",
        "enum": f"expected one of {_quoted(value) if isinstance(value, list) else value}, got {got}.",
        "const": f"expected {value!r}, got {got}.",
        "minimum": f"must be at least {value}, got {instance}.",
        "maximum": f"must be at most {value}, got {instance}.",
        "exclusiveMinimum": f"must be greater than {value}, got {instance}.",
        "exclusiveMaximum": f"must be less than {value}, got {instance}.",
        "minLength": "must not be empty."
        if value == 1
        else f"must be at least {value} characters long.",
        "maxLength": f"must be at most {value} characters long.",
        "pattern": f"{got} does not have the expected form (pattern `{value}`).",
    }
    return messages.get(str(error.validator), f"{error.message}.")


def _article(type_name: Any) -> str:
    names = {
        "object": "a table",
        "array": "an array",
        "integer": "an integer",
        "string": "a string",
    }
    if isinstance(type_name, list):
        return " or ".join(_article(name) for name in type_name)
    return names.get(str(type_name), f"a {type_name}")


def _closest(word: str, choices: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _quoted(values: Iterable[Any]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def _doc_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Pydantic locations include union tags; keep only the parts that exist in the document."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
    return tuple(path)


def _document_order(issue: ConfigIssue) -> tuple[str, int, int]:
    location = issue.location
    return (location.source, location.line or 0, location.column or 0)
