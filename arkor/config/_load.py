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
from arkor.config._limits import DEPTH_HINT, MAX_EXTENDS, toml_nesting_overflow, too_deep
from arkor.config._models import SECRET_FIELDS
from arkor.config._toml_positions import Position, toml_positions
from arkor.config._yaml import parse_yaml
from arkor.errors import UsageError

CONFIG_FILENAMES = ("arkor.toml", "arkor.yaml", "arkor.yml")
PYPROJECT = "pyproject.toml"
_SUFFIXES = (".toml", ".yaml", ".yml")
_PYPROJECT_PREFIX: KeyPath = ("tool", "arkor")

_ENV_REFERENCE = re.compile(r"\$(\$)?\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LONG_NUMBER = re.compile(r"[0-9_]{4000,}")


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
    references: dict[KeyPath, str]
    """Values that were one whole ``${env:…}`` reference, by key path, with that reference."""

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
        return Origin(_display(self.path), self.path, (1, 1), (1, 1))

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
        problem = "is not a regular file" if main.exists() else "does not exist"
        raise ConfigError(
            message=f"Config file {_display(main)} {problem}. Check the path passed to `-c`."
        )
    issues: list[ConfigIssue] = []
    sources: list[SourceFile] = []
    references: dict[KeyPath, str] = {}
    data, origins = _load_chain(main, env, sources, issues, (), references)
    overrides = tuple(overrides)
    for override in overrides:
        _apply_override(override, data, origins, issues, references)
    if not issues and (deep := too_deep(data)) is not None:  # `--set a.b.c…` keys
        issues.append(_too_deep_issue(origins, deep))
    if issues:
        raise ConfigError(issues)
    return RawConfig(data, origins, main, sources, overrides, cwd, references)


def _locate(origins: Mapping[KeyPath, Origin], path: KeyPath) -> Location:
    """The location of ``path`` or of its nearest ancestor that has one."""
    for depth in range(len(path), -1, -1):
        found = origins.get(path[:depth])
        if found is not None:
            return found.location()
    return Location("?")


def _load_chain(
    path: Path,
    env: Mapping[str, str],
    sources: list[SourceFile],
    issues: list[ConfigIssue],
    chain: tuple[Path, ...],
    references: dict[KeyPath, str],
) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Load ``path`` merged over the file it extends, recursively (at most MAX_EXTENDS deep)."""
    display = _display(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ConfigError(
            message=(
                f"{display}: config files must end in .toml, .yaml or .yml, so Arkor knows how "
                "to read them."
            )
        )
    try:
        raw_bytes = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            [ConfigIssue(f"cannot read the file: {error.strerror or error}.", Location(display))]
        ) from None
    sources.append(SourceFile(path, "config" if not chain else "extends", sha256_bytes(raw_bytes)))
    data, origins = _parse(path, raw_bytes)
    _interpolate(data, (), env, origins, issues, references)
    parent = data.pop("extends", None)
    if parent is None:
        return data, origins
    here = (*chain, path)
    problem = _extends_problem(path, parent, here)
    if problem is not None:
        issues.append(ConfigIssue(problem, origins[("extends",)].location(), ("extends",)))
        return data, origins
    base_path = (path.parent / str(parent)).resolve()
    base_references: dict[KeyPath, str] = {}
    base_data, base_origins = _load_chain(base_path, env, sources, issues, here, base_references)
    replaced = _merge(base_data, data, ())

    def overridden(key: KeyPath) -> bool:
        return any(key[: len(prefix)] == prefix and len(key) > len(prefix) for prefix in replaced)

    kept = {key: origin for key, origin in base_origins.items() if not overridden(key)}
    for key, reference in base_references.items():
        if key not in origins and not overridden(key):
            references[key] = reference
    origins.pop(("extends",), None)
    return base_data, {**kept, **origins}


def _extends_problem(path: Path, parent: Any, chain: tuple[Path, ...]) -> str | None:
    """Why the file ``path`` cannot extend ``parent``, checked before that file is read."""
    if not isinstance(parent, str) or not parent:
        return f"expected a file path string, got {describe_value(parent)}."
    base_path = (path.parent / parent).resolve()
    if base_path in chain:
        cycle = " → ".join(_display(p) for p in (*chain, base_path))
        return f"`extends` makes a cycle: {cycle}. Remove one of these `extends` keys."
    if len(chain) >= MAX_EXTENDS:
        return (
            f"`extends` chains more than {MAX_EXTENDS} files, the most Arkor follows. Fold some "
            "of the files in this chain together."
        )
    if base_path.suffix.lower() not in _SUFFIXES:
        return (
            f"the extended file {_display(base_path)} is not a config: `extends` names a "
            ".toml, .yaml or .yml file."
        )
    if not base_path.exists():
        return (
            f"the extended file {_display(base_path)} does not exist (paths are relative to "
            f"{_display(path)})."
        )
    if not base_path.is_file():
        return f"the extended file {_display(base_path)} is not a regular file."
    return None


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Parse one file by its suffix into data plus per-key origins (``()`` is the document)."""
    display = _display(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            [
                ConfigIssue(
                    f"the file is not UTF-8 text: byte 0x{raw[error.start]:02x} here cannot "
                    "start or continue a UTF-8 character. Save the file as UTF-8 in your editor.",
                    Location(display, line, column),
                )
            ]
        ) from None
    if not _without_comments(text).strip():
        raise ConfigError(
            [
                ConfigIssue(
                    "the file is empty. A config needs at least a `trainer` table with `name`, "
                    "`model` and `dataset`; `arkor init` writes a complete one to start from.",
                    Location(display, 1, 1),
                )
            ]
        )
    if path.suffix.lower() == ".toml":
        data, spans = _parse_toml(text, display)
        if path.name == PYPROJECT:
            data, spans = _tool_arkor(data, spans, display)
    else:
        data, spans = parse_yaml(text, display)
    origins = {key: Origin(display, path, *span) for key, span in spans.items()}
    origins.setdefault((), Origin(display, path, (1, 1), (1, 1)))
    deep = too_deep(data)  # dotted keys nest without brackets; check before walking the data
    if deep is not None:
        raise ConfigError([_too_deep_issue(origins, deep)])
    return data, origins


def _too_deep_issue(origins: Mapping[KeyPath, Origin], path: KeyPath) -> ConfigIssue:
    return ConfigIssue(
        f"tables and arrays nest too deeply here. {DEPTH_HINT}", _locate(origins, path), path
    )


def _without_comments(text: str) -> str:
    """``text`` without ``#`` comment lines, to tell an empty document from a short one."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _tool_arkor(
    data: dict[str, Any], spans: dict[KeyPath, tuple[Position, Position]], display: str
) -> tuple[dict[str, Any], dict[KeyPath, tuple[Position, Position]]]:
    """The ``[tool.arkor]`` table of a ``pyproject.toml``, with positions in that file."""
    tool = data.get("tool")
    table = tool.get("arkor") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        where = spans.get(("tool", "arkor")) or spans.get(("tool",)) or ((1, 1), (1, 1))
        raise ConfigError(
            [
                ConfigIssue(
                    "no [tool.arkor] table here. Add one, or use arkor.toml.",
                    Location(display, *where[0]),
                )
            ]
        )
    cut = len(_PYPROJECT_PREFIX)
    spans = {k[cut:]: v for k, v in spans.items() if k[:cut] == _PYPROJECT_PREFIX}
    return table, spans


def _parse_toml(
    text: str, display: str
) -> tuple[dict[str, Any], dict[KeyPath, tuple[Position, Position]]]:
    overflow = toml_nesting_overflow(text)
    if overflow is not None:
        raise ConfigError(
            [
                ConfigIssue(
                    f"tables and arrays nest too deeply here. {DEPTH_HINT}",
                    _offset_location(text, overflow, display),
                )
            ]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            [_toml_issue(str(error), text, display)], message="The config is not valid TOML:"
        ) from None
    except ValueError:  # an integer too long for Python to convert
        match = _LONG_NUMBER.search(text)
        raise ConfigError(
            [
                ConfigIssue(
                    "this number has thousands of digits, more than a config can use. Shorten it.",
                    _offset_location(text, match.start() if match else 0, display),
                )
            ]
        ) from None
    return data, {key: (span.key, span.value) for key, span in toml_positions(text).items()}


def _toml_issue(message: str, text: str, display: str) -> ConfigIssue:
    """A ``tomllib`` error, located; one at the end of the document points at its last line."""
    match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if match:
        location = Location(display, int(match[1]), int(match[2]))
        reason = message[: match.start()].strip()
    else:
        location = _offset_location(text, len(text.rstrip()), display)
        reason = re.sub(r"\s*\(at end of document\)$", "", message)
        reason += " at the end of the file"
    return ConfigIssue(f"TOML syntax error: {reason}.", location)


def _offset_location(text: str, offset: int, display: str) -> Location:
    line = text.count("\n", 0, offset) + 1
    return Location(display, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _interpolate(
    node: Any,
    path: KeyPath,
    env: Mapping[str, str],
    origins: Mapping[KeyPath, Origin],
    issues: list[ConfigIssue],
    references: dict[KeyPath, str],
) -> Any:
    """Replace ``${env:NAME}`` / ``${env:NAME:-default}`` in strings, in place; ``$${`` escapes.

    A value that is one whole reference is noted in ``references``: the validator reads
    it as a number or boolean where the schema expects one (see :func:`typed_references`).
    """
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _interpolate(value, (*path, key), env, origins, issues, references)
        return node
    if isinstance(node, list):
        return [
            _interpolate(item, (*path, i), env, origins, issues, references)
            for i, item in enumerate(node)
        ]
    if not isinstance(node, str) or "${" not in node or path in SECRET_FIELDS:
        return node
    whole = _ENV_REFERENCE.fullmatch(node)
    if whole is not None and not whole[1]:
        references[path] = node

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match[0][1:]
        value = env.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        issues.append(
            ConfigIssue(
                f"environment variable {name} is not set. Export it, or give a default: "
                f"`${{env:{name}:-value}}`.",
                _locate(origins, path),
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
    references: dict[KeyPath, str],
) -> None:
    """Apply ``--set a.b.c=VALUE``: the value is a TOML literal, or else a plain string.

    Every table the flag creates gets the flag as its origin, so an unknown key in it
    (``--set trainr.max_steps=10``) is blamed on the flag, not on the file.
    """
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
    if toml_nesting_overflow(value_text, start_depth=len(keys)) is not None:
        issues.append(
            ConfigIssue(f"the value nests too deeply. {DEPTH_HINT}", Location(source), keys)
        )
        return
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):
        value = value_text
    node = data
    for depth, key in enumerate(keys[:-1]):
        if key not in node:
            origins[keys[: depth + 1]] = Origin(source)
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
    for stale in [path for path in references if path[: len(keys)] == keys]:
        del references[stale]
    origins[keys] = Origin(source)


def has_arkor_table(pyproject: Path) -> bool:
    """Whether a ``pyproject.toml`` has a ``[tool.arkor]`` table."""
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if "arkor" not in text:
        return False
    if toml_nesting_overflow(text) is not None:
        return "[tool.arkor" in text
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return "[tool.arkor" in text
    tool = data.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("arkor"), dict)


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


def resolve_env(value: str, where: str) -> str:
    """Fill the ``${env:NAME}`` references a secret-bearing value kept, from the environment.

    Only at the moment the secret is used (``arkor start``, a build fetching a URL), never
    into anything written down. ``where`` names the key for the error.
    """

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        found = os.environ.get(name)
        if found is None:
            raise UsageError(
                f"{where} needs the environment variable {name}, which is not set. Export it "
                f"(e.g. `export {name}=...`) and run again."
            )
        return found

    return re.sub(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", replace, value)
