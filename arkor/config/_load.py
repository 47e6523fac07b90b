"""Find, parse and compose config documents, remembering where every value came from.

Precedence, highest first: ``--set`` overrides, the config file, the files it
``extends`` (recursively), the models' defaults. Every value keeps its origin (file,
line, column) through the merge, so an error names the file that holds the bad value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor._fs import sha256_bytes
from arkor.config._errors import ConfigError, ConfigIssue, KeyPath, Location, format_key_path
from arkor.config._models import SECRET_FIELDS
from arkor.config._toml_positions import Position, toml_positions

CONFIG_FILENAMES = ("arkor.toml", "arkor.yaml", "arkor.yml")
PYPROJECT = "pyproject.toml"
_PYPROJECT_PREFIX: KeyPath = ("tool", "arkor")

_ENV_REFERENCE = re.compile(r"\$(\$)?\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file (or ``--set``) and the positions of key and value."""

    source: str
    file: Path | None = None
    key: Position | None = None
    value: Position | None = None

    def location(self, *, at_key: bool = False) -> Location:
        position = (self.key if at_key else self.value) or self.key or self.value
        if position is None:
            return Location(self.source)
        return Location(self.source, position[0], position[1])


@dataclass(frozen=True)
class SourceFile:
    """A file that contributed to the config, with the sha256 of its bytes."""

    path: Path
    role: str
    sha256: str


@dataclass
class RawConfig:
    """A composed document before validation, with the origin of every key path."""

    data: dict[str, Any]
    origins: dict[KeyPath, Origin]
    path: Path
    sources: list[SourceFile]
    overrides: tuple[str, ...]
    cwd: Path

    @property
    def root(self) -> Path:
        """The project root: the working folder when the config is inside it, else the config's folder.

        So ``arkor build -c configs/small.yaml`` run in a project keeps the project's
        ``.arkor/`` and imports its callbacks package, while ``-c ../other/arkor.toml``
        builds that other project.
        """
        cwd = self.cwd.resolve()
        return cwd if self.path.is_relative_to(cwd) else self.path.parent

    def origin(self, path: KeyPath) -> Origin:
        """The origin of ``path``, or of its nearest ancestor that has one."""
        for depth in range(len(path), -1, -1):
            found = self.origins.get(path[:depth])
            if found is not None:
                return found
        return Origin(_display(self.path), self.path)

    def locate(self, path: KeyPath, *, at_key: bool = False) -> Location:
        """The location of ``path`` for an error message."""
        return self.origin(path).location(at_key=at_key)


def discover_config(cwd: Path) -> Path:
    """Find the one config in ``cwd``: ``arkor.toml``, ``arkor.yaml``/``.yml``, or ``[tool.arkor]``."""
    candidates = [cwd / name for name in CONFIG_FILENAMES if (cwd / name).is_file()]
    pyproject = cwd / PYPROJECT
    if pyproject.is_file() and has_arkor_table(pyproject):
        candidates.append(pyproject)
    if not candidates:
        raise ConfigError(
            message=(
                f"No Arkor config found in {cwd}: looked for {', '.join(CONFIG_FILENAMES)} and "
                f"[tool.arkor] in {PYPROJECT}. Run `arkor init` to create one, or pass "
                "`-c PATH` to use a config elsewhere."
            )
        )
    if len(candidates) > 1:
        names = " and ".join(_display(path) for path in candidates)
        raise ConfigError(
            message=(
                f"Found more than one Arkor config: {names}. Keep one (delete or rename the "
                "other), or choose with `-c PATH`."
            )
        )
    return candidates[0]


def load_raw(
    path: Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RawConfig:
    """Parse the config at ``path`` (or discover it), follow ``extends``, interpolate, override."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    main = (cwd / path).resolve() if path is not None else discover_config(cwd).resolve()
    if not main.is_file():
        raise ConfigError(
            message=f"Config file {_display(main)} does not exist. Check the path passed to `-c`."
        )
    issues: list[ConfigIssue] = []
    sources: list[SourceFile] = []
    data, origins = _load_chain(main, env, sources, issues, chain=())
    overrides = tuple(overrides)
    for override in overrides:
        _apply_override(override, data, origins, issues)
    if issues:
        raise ConfigError(issues)
    return RawConfig(data, origins, main, sources, overrides, cwd)


def _load_chain(
    path: Path,
    env: Mapping[str, str],
    sources: list[SourceFile],
    issues: list[ConfigIssue],
    chain: tuple[Path, ...],
) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Load ``path`` merged over the file it extends, recursively."""
    raw_bytes = path.read_bytes()
    sources.append(SourceFile(path, "config" if not chain else "extends", sha256_bytes(raw_bytes)))
    data, origins = _parse(path, raw_bytes)
    _interpolate(data, (), env, origins, issues)
    parent = data.pop("extends", None)
    if parent is None:
        return data, origins
    if not isinstance(parent, str) or not parent:
        issues.append(
            ConfigIssue(
                f"expected a file path string, got {describe_value(parent)}",
                origins[("extends",)].location(),
                ("extends",),
            )
        )
        return data, origins
    base_path = (path.parent / parent).resolve()
    here = (*chain, path)
    if base_path in here:
        cycle = " → ".join(_display(p) for p in (*here, base_path))
        issues.append(
            ConfigIssue(
                f"`extends` makes a cycle: {cycle}. Remove one of these `extends` keys.",
                origins[("extends",)].location(),
                ("extends",),
            )
        )
        return data, origins
    if not base_path.is_file():
        issues.append(
            ConfigIssue(
                f"the extended file {_display(base_path)} does not exist (paths are relative "
                f"to {_display(path)}).",
                origins[("extends",)].location(),
                ("extends",),
            )
        )
        return data, origins
    base_data, base_origins = _load_chain(base_path, env, sources, issues, here)
    replaced = _merge(base_data, data, ())
    kept = {
        key: origin
        for key, origin in base_origins.items()
        if not any(key[: len(prefix)] == prefix and len(key) > len(prefix) for prefix in replaced)
    }
    origins.pop(("extends",), None)
    return base_data, {**kept, **origins}


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Parse one file by its suffix into data plus per-key origins."""
    display = _display(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            [ConfigIssue(f"the file is not UTF-8 text ({error.reason}).", Location(display))]
        ) from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data, spans = _parse_toml(text, display)
        if path.name == PYPROJECT:
            tool = data.get("tool", {}).get("arkor")
            if not isinstance(tool, dict):
                raise ConfigError(
                    message=f"{display} has no [tool.arkor] table. Add one, or use arkor.toml."
                )
            data = tool
            cut = len(_PYPROJECT_PREFIX)
            spans = {k[cut:]: v for k, v in spans.items() if k[:cut] == _PYPROJECT_PREFIX}
    elif suffix in (".yaml", ".yml"):
        data, spans = _parse_yaml(text, display)
    else:
        raise ConfigError(
            message=(
                f"{display}: config files must end in .toml, .yaml or .yml, so Arkor knows how "
                "to read them."
            )
        )
    origins = {key: Origin(display, path, *span) for key, span in spans.items()}
    return data, origins


def _parse_toml(
    text: str, display: str
) -> tuple[dict[str, Any], dict[KeyPath, tuple[Position, Position]]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        location = Location(display, int(match[1]), int(match[2])) if match else Location(display)
        reason = message[: match.start()].strip() if match else message
        raise ConfigError(
            [ConfigIssue(f"TOML syntax error: {reason}.", location)],
            message="The config is not valid TOML:",
        ) from None
    return data, {key: (span.key, span.value) for key, span in toml_positions(text).items()}


def _parse_yaml(
    text: str, display: str
) -> tuple[dict[str, Any], dict[KeyPath, tuple[Position, Position]]]:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError(
            [ConfigIssue(f"YAML syntax error: {reason}.", location)],
            message="The config is not valid YAML:",
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    f"expected a mapping at the top level, got {describe_value(data)}.",
                    Location(display, 1, 1),
                )
            ]
        )
    spans: dict[KeyPath, tuple[Position, Position]] = {}
    duplicates: list[ConfigIssue] = []
    _walk_yaml(node, (), spans, duplicates, display)
    if duplicates:
        raise ConfigError(duplicates)
    return _string_keys(data), spans


def _walk_yaml(
    node: Any,
    path: KeyPath,
    spans: dict[KeyPath, tuple[Position, Position]],
    duplicates: list[ConfigIssue],
    display: str,
) -> None:
    import yaml

    def at(mark: Any) -> Position:
        return mark.line + 1, mark.column + 1

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            if key_path in spans:
                line, column = at(key_node.start_mark)
                duplicates.append(
                    ConfigIssue(
                        "duplicate key; YAML would silently keep only the last one. Remove one.",
                        Location(display, line, column),
                        key_path,
                    )
                )
            spans[key_path] = (at(key_node.start_mark), at(value_node.start_mark))
            _walk_yaml(value_node, key_path, spans, duplicates, display)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            spans[(*path, index)] = (at(item.start_mark), at(item.start_mark))
            _walk_yaml(item, (*path, index), spans, duplicates, display)


def _string_keys(value: Any) -> Any:
    """YAML allows non-string keys (``1:``, ``true:``); config keys are always strings."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _interpolate(
    node: Any,
    path: KeyPath,
    env: Mapping[str, str],
    origins: Mapping[KeyPath, Origin],
    issues: list[ConfigIssue],
) -> Any:
    """Replace ``${env:NAME}`` / ``${env:NAME:-default}`` in strings, in place; ``$${`` escapes."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _interpolate(value, (*path, key), env, origins, issues)
        return node
    if isinstance(node, list):
        return [_interpolate(item, (*path, i), env, origins, issues) for i, item in enumerate(node)]
    if not isinstance(node, str) or "${" not in node or path in SECRET_FIELDS:
        return node

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match[0][1:]
        value = env.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        origin = origins.get(path)
        issues.append(
            ConfigIssue(
                f"environment variable {name} is not set. Export it, or give a default: "
                f"`${{env:{name}:-value}}`.",
                origin.location() if origin else Location("?"),
                path,
            )
        )
        return match[0]

    return _ENV_REFERENCE.sub(replace, node)


def _merge(base: dict[str, Any], top: dict[str, Any], path: KeyPath) -> list[KeyPath]:
    """Merge ``top`` into ``base`` in place, table by table; return the replaced subtrees.

    A table whose ``type`` differs from the base's (a dataset switched from
    ``huggingface`` to ``file``) replaces the base's table instead of merging with it.
    """
    replaced: list[KeyPath] = []
    for key, value in top.items():
        current = base.get(key)
        key_path = (*path, key)
        if (
            isinstance(current, dict)
            and isinstance(value, dict)
            and current.get("type", value.get("type")) == value.get("type", current.get("type"))
        ):
            replaced.extend(_merge(current, value, key_path))
        else:
            if isinstance(current, dict | list):
                replaced.append(key_path)
            base[key] = value
    return replaced


def _apply_override(
    override: str,
    data: dict[str, Any],
    origins: dict[KeyPath, Origin],
    issues: list[ConfigIssue],
) -> None:
    """Apply ``--set a.b.c=VALUE``: the value is a TOML literal, or else a plain string."""
    source = f"--set {override}"
    key_text, sep, value_text = override.partition("=")
    keys = tuple(part.strip() for part in key_text.split("."))
    if not sep or not all(keys):
        issues.append(
            ConfigIssue(
                "expected KEY=VALUE with a dotted key, e.g. `--set trainer.max_steps=10`.",
                Location(source),
            )
        )
        return
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            issues.append(
                ConfigIssue(
                    f"cannot set a key inside `{format_key_path(keys[: depth + 1])}`, "
                    f"which is {describe_value(child)}, not a table.",
                    Location(source),
                    keys,
                )
            )
            return
        node = child
    node[keys[-1]] = value
    for stale in [path for path in origins if path[: len(keys)] == keys]:
        del origins[stale]
    origins[keys] = Origin(source)


def has_arkor_table(pyproject: Path) -> bool:
    """Whether a ``pyproject.toml`` has a ``[tool.arkor]`` table."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "[tool.arkor" in pyproject.read_text(encoding="utf-8", errors="replace")
    return isinstance(data.get("tool", {}).get("arkor"), dict)


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe_value(value: Any) -> str:
    """Name a value's type the way a config author thinks of it."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__
