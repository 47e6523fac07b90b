"""Render ``arkor.toml.example``: every key, its description, its default, from the models.

Like the schema, the example is generated, so a field added to the models shows up in
both. Keys without a default show their first example; optional keys are commented out.
"""

from __future__ import annotations

import textwrap
import types
import typing
from typing import Any

import tomli_w
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from arkor.config._models import ArkorConfig
from arkor.config._schema import SCHEMA_URL

_WIDTH = 88
_HEADER = f"""\
#:schema {SCHEMA_URL}
# Every key of an Arkor config, with its description and default. Generated from the
# config models (the same source as the JSON Schema), so it is always complete.
# Copy the parts you need into arkor.toml; `arkor validate` checks the result.
"""


def render_example() -> str:
    """The full commented example, as committed in ``arkor.toml.example``."""
    lines = [_HEADER]
    _render_model(ArkorConfig, (), lines)
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_model(model: type[BaseModel], table: tuple[str, ...], lines: list[str]) -> None:
    subtables: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        submodels = _submodels(field.annotation)
        if submodels and not _accepts_scalar(field.annotation):
            subtables.append((name, field))
            continue
        _comment(field.description, lines)
        value = _value_of(field)
        optional = field.default is None
        lines.append(f"{'# ' if optional else ''}{name} = {_toml(value)}")
        lines.append("")
    for name, field in subtables:
        path = (*table, name)
        submodels = _submodels(field.annotation)
        for index, submodel in enumerate(submodels):
            if index == 0:
                _comment(field.description, lines)
                lines.append(f"[{'.'.join(path)}]")
                _render_model(submodel, path, lines)
            else:
                lines.append(f"# Or, {_lowercase_first(submodel.__doc__ or submodel.__name__)}")
                lines.append(f"# [{'.'.join(path)}]")
                block: list[str] = []
                _render_model(submodel, path, block)
                lines.extend(
                    f"# {line}" if line and not line.startswith("#") else line for line in block
                )


def _value_of(field: FieldInfo) -> Any:
    if field.default is not None and not field.is_required() and field.default_factory is None:
        return field.default
    if field.examples:
        return field.examples[0]
    if typing.get_origin(field.annotation) is typing.Literal:
        return typing.get_args(field.annotation)[0]
    return field.default


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type can be, in declaration order (unions and Annotated unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _submodels(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [model for arg in typing.get_args(annotation) for model in _submodels(arg)]
    return []


def _accepts_scalar(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_scalar(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return _accepts_scalar(typing.get_args(annotation)[0])
    return not _submodels(annotation) and annotation is not type(None)


def _comment(text: str | None, lines: list[str]) -> None:
    for paragraph in (text or "").split("\n\n"):
        lines.extend(
            textwrap.wrap(
                " ".join(paragraph.split()), _WIDTH - 2, initial_indent="# ", subsequent_indent="# "
            )
        )


def _toml(value: Any) -> str:
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def _lowercase_first(text: str) -> str:
    first = text.strip().splitlines()[0].rstrip(".")
    return f"{first[0].lower()}{first[1:]}:"
