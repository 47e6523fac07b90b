"""Read a YAML config safely: bounded, plain values only, and errors a person can act on.

PyYAML is used for scanning and composing only. Its events are checked first (nesting
depth, alias expansion, aliases inside their own anchor), so a hostile file fails in
milliseconds instead of exhausting the stack or the memory. The node tree is then turned
into data here rather than by PyYAML's constructor: keys are the text as written (``on:``
stays ``"on"``, not ``True``), dates stay strings, other tags are refused, and every key's
position is recorded on the way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from arkor.config._errors import ConfigError, ConfigIssue, KeyPath, Location
from arkor.config._limits import DEPTH_HINT, MAX_ALIAS_NODES, MAX_DEPTH
from arkor.config._toml_positions import Position

if TYPE_CHECKING:
    import yaml

Spans = dict[KeyPath, tuple[Position, Position]]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {f"{_TAG}timestamp", f"{_TAG}value"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_yaml(text: str, display: str) -> tuple[dict[str, Any], Spans]:
    """Parse one YAML document into data plus the (key, value) position of every key path."""
    import yaml

    try:
        _check_events(text, display)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError(
            [explain_yaml_error(error, text, display)], message="The config is not valid YAML:"
        ) from None
    if node is None:
        return {}, {}
    builder = _Builder(display)
    data = builder.build(node, ())
    if builder.issues:  # an aliased value is built once per use: report its problems once
        unique = {(str(issue.location), issue.message): issue for issue in builder.issues}
        raise ConfigError(list(unique.values()))
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    "expected a mapping at the top level (`trainer:` …), got "
                    f"{'a list' if isinstance(data, list) else 'a single value'}.",
                    _at(node.start_mark, display),
                )
            ]
        )
    return data, builder.spans


def _check_events(text: str, display: str) -> None:
    """Refuse deep nesting and alias bombs before PyYAML composes (and recurses over) nodes.

    Counts, for every anchor, the values it stands for once its own aliases are expanded;
    each alias adds that count. A billion-laughs file is refused at the first alias that
    takes the total over :data:`MAX_ALIAS_NODES`.
    """
    import yaml

    stack: list[list[int]] = []  # per open collection: [values inside, levels below]
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height)
    open_anchors: list[str | None] = []
    expanded = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) + 1 > MAX_DEPTH:
                raise _too_deep(event, display)
            stack.append([1, 0])
            open_anchors.append(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            size, height = stack.pop()
            anchor = open_anchors.pop()
            if anchor is not None:
                anchors[anchor] = (size, height + 1)
            _add(stack, size, height + 1)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
            _add(stack, 1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise ConfigError(
                    [
                        ConfigIssue(
                            f"the alias `*{event.anchor}` sits inside the value it names, so it "
                            "would repeat forever. Write the value out instead.",
                            _at(event.start_mark, display),
                        )
                    ]
                )
            size, height = anchors.get(event.anchor or "", (1, 0))
            expanded += size
            if expanded > MAX_ALIAS_NODES:
                raise ConfigError(
                    [
                        ConfigIssue(
                            f"aliases (`*name`) in this file expand to more than "
                            f"{MAX_ALIAS_NODES:,} values, the most Arkor accepts; a file this "
                            "small that grows this large is an alias bomb. Write the values "
                            "out, or share settings with `extends` instead of aliases.",
                            _at(event.start_mark, display),
                        )
                    ]
                )
            if len(stack) + height > MAX_DEPTH:
                raise _too_deep(event, display)
            _add(stack, size, height)


def _add(stack: list[list[int]], size: int, height: int) -> None:
    if stack:
        stack[-1][0] += size
        stack[-1][1] = max(stack[-1][1], height)


def _too_deep(event: yaml.Event, display: str) -> ConfigError:
    return ConfigError(
        [
            ConfigIssue(
                f"lists and mappings nest too deeply here. {DEPTH_HINT}",
                _at(event.start_mark, display),
            )
        ]
    )


class _Builder:
    """Turn a checked node tree into plain data, recording where every key was written."""

    def __init__(self, display: str) -> None:
        import yaml

        self.display = display
        self.spans: Spans = {}
        self.issues: list[ConfigIssue] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        import yaml

        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != f"{_TAG}seq":
                return self._unsupported(node)
            items = []
            for index, item in enumerate(node.value):
                self.spans[(*path, index)] = (_pos(item.start_mark), _pos(item.start_mark))
                items.append(self.build(item, (*path, index)))
            return items
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> Any:
        import yaml

        if node.tag != f"{_TAG}map":
            return self._unsupported(node)
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                for source in self._merge_sources(value_node):
                    values = self._mapping(source, path)
                    for key, value in values.items() if isinstance(values, dict) else ():
                        merged.setdefault(key, value)
        data: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(
                    ConfigIssue(
                        "a key must be plain text, not a list or a mapping.",
                        _at(key_node.start_mark, self.display),
                        path,
                    )
                )
                continue
            key = self._text(key_node)
            key_path = (*path, key)
            if key in data:
                self.issues.append(
                    ConfigIssue(
                        "duplicate key; YAML would silently keep only the last one. Remove one.",
                        _at(key_node.start_mark, self.display),
                        key_path,
                    )
                )
            self.spans[key_path] = (_pos(key_node.start_mark), _pos(value_node.start_mark))
            data[key] = self.build(value_node, key_path)
        return {**merged, **data}

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        import yaml

        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if all(isinstance(source, yaml.MappingNode) for source in sources):
            return list(sources)
        self.issues.append(
            ConfigIssue(
                "`<<` merges mappings: give it an alias of a mapping (`<<: *defaults`) or a "
                "list of them.",
                _at(node.start_mark, self.display),
            )
        )
        return []

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in _TEXT_TAGS:
            return self._text(node)
        if node.tag not in _SCALAR_TAGS:
            return self._unsupported(node)
        if node.tag == f"{_TAG}str":
            return self._text(node)
        method = getattr(self._constructor, f"construct_yaml_{node.tag.removeprefix(_TAG)}")
        try:
            return method(node)
        except (ValueError, KeyError, AttributeError, OverflowError):
            kind = node.tag.removeprefix(_TAG)
            self.issues.append(
                ConfigIssue(
                    f"`{_short(str(node.value))}` cannot be read as {kind}. Write it as one, or "
                    "quote it to make it text.",
                    _at(node.start_mark, self.display),
                )
            )
            return None

    def _text(self, node: yaml.Node) -> str:
        """A scalar's text; lone surrogates (from ``"\\ud800"`` escapes) are not text."""
        text = str(node.value)
        if _SURROGATE.search(text):
            self.issues.append(
                ConfigIssue(
                    "this text holds a lone surrogate escape (`\\ud800`…`\\udfff`), which is "
                    "not a character. Write the character itself, or a `\\U` escape of it.",
                    _at(node.start_mark, self.display),
                )
            )
        return text

    def _unsupported(self, node: yaml.Node) -> None:
        tag = str(node.tag).replace(_TAG, "!!")
        self.issues.append(
            ConfigIssue(
                f"the YAML tag `{tag}` is not supported: a config holds plain strings, numbers, "
                "booleans, lists and mappings. Remove the tag.",
                _at(node.start_mark, self.display),
            )
        )
        return None


def explain_yaml_error(error: yaml.YAMLError, text: str, display: str) -> ConfigIssue:
    """One located sentence for a PyYAML error, in the words of someone editing the file."""
    import yaml

    if isinstance(error, yaml.reader.ReaderError):
        line, column = _line_column(text, error.position)
        code = error.character if isinstance(error.character, int) else ord(str(error.character))
        return ConfigIssue(
            f"the control character U+{code:04X} is not allowed in YAML. Delete it; to put it "
            f'in a value, write it as an escape inside double quotes ("\\x{code:02x}").'
            if code < 0x100
            else f"the character U+{code:04X} is not allowed in YAML. Delete it.",
            Location(display, line, column),
        )
    if not isinstance(error, yaml.MarkedYAMLError):
        return ConfigIssue(f"YAML syntax error: {error}.", Location(display, 1, 1))
    problem = error.problem or ""
    context = error.context or ""
    mark = error.problem_mark or error.context_mark
    for pattern, context_pattern, use_context, explain in _RULES:
        if re.search(pattern, problem) and re.search(context_pattern, context):
            chosen = (error.context_mark if use_context else None) or mark
            message = explain(text, chosen, error) if callable(explain) else explain
            if isinstance(message, tuple):
                message, (line, column) = message
                return ConfigIssue(message, Location(display, line, column))
            return ConfigIssue(message, _at(chosen, display))
    reason = " ".join(part for part in (context, problem) if part)
    return ConfigIssue(f"YAML syntax error: {reason}.", _at(mark, display))


def _mapping_value_problem(text: str, mark: Any, _error: Any) -> str:
    """``mapping values are not allowed here``: the ``:`` that PyYAML could not place."""
    lines = text.splitlines()
    line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    before = line[: mark.column] if mark is not None else ""
    if re.search(r":\s", before.lstrip()):
        return (
            "a value contains `: `, which YAML reads as another key. Put the value in quotes "
            '(`name: "a: b"`).'
        )
    previous = next(
        (
            candidate
            for candidate in reversed(lines[: mark.line] if mark is not None else [])
            if candidate.strip() and not candidate.lstrip().startswith("#")
        ),
        "",
    )
    indent = len(line) - len(line.lstrip())
    previous_indent = len(previous) - len(previous.lstrip())
    if ":" not in previous:
        return (
            "the line above has no `:`, so YAML reads it and this line as one value. Write "
            "it as `key: value`."
        )
    if indent > previous_indent:
        return (
            "this key is indented more than the key above it, whose value is already given. "
            "Line it up with the keys of its table, or remove the value above to nest it there."
        )
    return "YAML cannot place this `:`. Check the indentation of this line and the one above."


def _indentation_problem(_text: str, mark: Any, error: Any) -> str:
    """``expected <block end>``: a line that starts in no column the open blocks use."""
    opened = error.context_mark
    where = (
        f" (the one that starts at line {opened.line + 1} has its keys in column {opened.column + 1})"
        if opened is not None
        else ""
    )
    return (
        "this line is not lined up with the keys above it: the keys of one mapping, and the "
        f"`- ` items of one list, start in the same column{where}. Indent this line with "
        "spaces to the column of the keys it belongs with."
    )


def _stray_text_problem(text: str, mark: Any, _error: Any) -> tuple[str, Position]:
    """``expected '<document start>'``: a lone value came first, so nothing after it is read."""
    line, column = _pos(mark)
    for number, content in enumerate(text.splitlines()[: mark.line], start=1):
        stripped = content.lstrip()
        if stripped and not stripped.startswith("#"):
            line, column = number, len(content) - len(stripped) + 1
            break
    return (
        "this text is a value on its own, outside any `key: value`, so YAML cannot read the "
        "keys after it (a comment missing its `#`?). Make it a comment, or a `key: value`.",
        (line, column),
    )


_RULES: list[tuple[str, str, bool, Any]] = [
    (r"mapping values are not allowed", "", False, _mapping_value_problem),
    (
        r"found character '\\t'",
        "",
        False,
        "a tab character: YAML indents with spaces only. Replace the tab with spaces.",
    ),
    (
        r"expected <block end>, but found '[\]}]'",
        "",
        False,
        "a closing bracket that closes nothing. Remove it, or add the `[` or `{` it belongs to.",
    ),
    (r"expected <block end>", "", False, _indentation_problem),
    (r"expected '<document start>'", "", False, _stray_text_problem),
    (
        r"",
        r"while scanning a block scalar",
        False,
        "after `|` or `>` only `+`, `-` or an indentation digit may follow on that line. Put "
        "the text on the lines below, indented, or quote the value.",
    ),
    (
        r"expected the node content, but found '[\]}]'",
        "",
        False,
        "a closing bracket with nothing open before it. Remove it, or quote the value it is "
        "part of.",
    ),
    (
        r"expected the node content",
        "",
        False,
        "a value is missing here, or starts with a character YAML reserves. Give the value, "
        'or put it in quotes (`key: "value"`).',
    ),
    (
        r"found unexpected end of stream",
        r"quoted scalar",
        True,
        "this quoted value is never closed. Add the closing quote.",
    ),
    (
        r"expected ',' or '\]'",
        "",
        True,
        "this `[` list is never closed, or its items lack commas. Add the `]`, or separate "
        "the items with `, `.",
    ),
    (
        r"expected ',' or '}'",
        "",
        True,
        "this `{` mapping is never closed, or its entries lack commas. Add the `}`, or "
        "separate the entries with `, `.",
    ),
    (
        r"could not find expected ':'",
        "",
        False,
        "a key without a `:`. Write it as `key: value`, or quote the text if it is a value.",
    ),
    (
        r"found character '(.)' that cannot start any token",
        "",
        False,
        "a value cannot start with this character in YAML (`@`, `` ` `` and `%` are "
        'reserved). Put the value in quotes (`key: "@value"`).',
    ),
    (
        r"expected alphabetic or numeric character",
        r"alias|anchor",
        False,
        "`*` and `&` start an alias or an anchor in YAML. Put the value in quotes "
        '(`key: "*value"`).',
    ),
    (
        r"found unknown escape character",
        "",
        False,
        "an unknown escape in a double-quoted value (Windows paths hit this). Use single "
        "quotes (`'C:\\data'`), or double the backslash.",
    ),
    (
        r"found undefined alias",
        "",
        False,
        "this alias names no anchor. Define the anchor above it (`key: &name value`), or "
        "write the value out.",
    ),
    (
        r"second occurrence",
        r"duplicate anchor",
        False,
        "this anchor name is already used above. Give it another name.",
    ),
    (
        r"but found another document",
        "",
        False,
        "a second YAML document (`---`) in one config. Keep one document per file; use "
        "`extends` to share settings between files.",
    ),
    (
        r"could not determine a constructor",
        "",
        False,
        "this YAML tag is not supported: a config holds plain strings, numbers, booleans, "
        "lists and mappings. Remove the tag.",
    ),
]


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _pos(mark: Any) -> Position:
    return mark.line + 1, mark.column + 1


def _at(mark: Any, display: str) -> Location:
    if mark is None:
        return Location(display, 1, 1)
    return Location(display, mark.line + 1, mark.column + 1)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "…"
