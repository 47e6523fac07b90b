"""Hostile or broken config input: always a located error and exit 2, fast, never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from arkor.config import ConfigError, load_config
from arkor.config._limits import MAX_ALIAS_NODES, MAX_DEPTH, MAX_EXTENDS
from tests.utils.cli import CliRunner
from tests.utils.projects import MINIMAL_TOML, minimal_project, write

YAML_BASE = """\
trainer:
  name: demo
  model: m
  dataset: {type: huggingface, name: a/b}
"""


def write_bytes(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.write_bytes(data)
    return path


def only_issue(config: str | None = None, overrides: tuple[str, ...] = ()) -> str:
    """The one issue ``load_config`` reports, as printed."""
    with pytest.raises(ConfigError) as error:
        load_config(config, overrides)
    (issue,) = error.value.issues
    return str(issue)


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: each level repeats the one below ``width`` times."""
    lines = ["a: &a [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        name, below = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{below}"] * width) + "]")
    return "\n".join(lines) + "\n"


class TestControlBytes:
    @pytest.mark.parametrize(("byte", "code"), [(b"\x00", "U+0000"), (b"\x07", "U+0007")])
    def test_control_byte_in_yaml_is_located_exit_2(
        self, project: Path, cli: CliRunner, byte: bytes, code: str
    ) -> None:
        write_bytes(project, "arkor.yaml", YAML_BASE.encode().replace(b"demo", b"de" + byte))
        result = cli("validate")
        assert result.exit_code == 2
        assert f"arkor.yaml:2:11: the control character {code} is not allowed" in result.stderr
        assert "Unexpected error" not in result.stderr

    def test_non_utf8_byte_is_located(self, project: Path) -> None:
        write_bytes(project, "arkor.toml", b'[trainer]\nname = "caf\xe9"\n')
        issue = only_issue()
        assert issue.startswith("arkor.toml:2:12: the file is not UTF-8 text: byte 0xe9")
        assert "Save the file as UTF-8" in issue

    @pytest.mark.parametrize("name", ["arkor.toml", "arkor.yaml"])
    @pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
    def test_empty_file_is_located_with_a_fix(self, project: Path, name: str, text: str) -> None:
        write(project, name, text)
        issue = only_issue()
        assert issue.startswith(f"{name}:1:1: the file is empty.")
        assert "arkor init" in issue


class TestNesting:
    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("arkor.toml", "x = " + "[" * 500 + "]" * 500 + "\n"),
            ("arkor.toml", "x = " + "{a = " * 500 + "1" + "}" * 500 + "\n"),
            ("arkor.toml", "x" + ".x" * 600 + " = 1\n"),
            ("arkor.toml", "[" + ".".join(["t"] * 600) + "]\nk = 1\n"),
            ("arkor.yaml", "x: " + "[" * 500 + "]" * 500 + "\n"),
            ("arkor.yaml", "x: " + "{a: " * 500 + "1" + "}" * 500 + "\n"),
            ("arkor.yaml", "".join("  " * depth + f"k{depth}:\n" for depth in range(500))),
            ("arkor.yaml", "".join("  " * depth + "-\n" for depth in range(500))),
        ],
        ids=[
            "toml-arrays",
            "toml-inline-tables",
            "toml-dotted-key",
            "toml-table-header",
            "yaml-flow",
            "yaml-flow-mappings",
            "yaml-block",
            "yaml-block-lists",
        ],
    )
    def test_deep_nesting_is_refused_with_the_limit(
        self, project: Path, cli: CliRunner, name: str, text: str
    ) -> None:
        write(project, name, text)
        result = cli("validate")
        assert result.exit_code == 2, result.stderr
        assert f"at most {MAX_DEPTH} levels" in result.stderr
        assert f"{name}:1:" in result.stderr or f"{name}:{MAX_DEPTH + 1}:" in result.stderr
        assert "RecursionError" not in result.stderr

    def test_nesting_up_to_the_limit_is_read(self, project: Path) -> None:
        depth = MAX_DEPTH - 2  # the document and `trainer` are two levels
        minimal_project(
            project,
            MINIMAL_TOML.replace(
                "max_steps = 10", "x = " + "[" * depth + "1" + "]" * depth + "\nmax_steps = 10"
            ),
        )
        assert "unknown key `x`" in only_issue()
        minimal_project(
            project,
            MINIMAL_TOML.replace(
                "max_steps = 10",
                "x = " + "[" * (depth + 1) + "1" + "]" * (depth + 1) + "\nmax_steps = 10",
            ),
        )
        assert f"at most {MAX_DEPTH} levels" in only_issue()

    def test_deep_set_value_blames_the_flag(self, project: Path) -> None:
        minimal_project(project)
        issue = only_issue(overrides=("trainer.x=" + "[" * 500 + "]" * 500,))
        assert issue.startswith("--set trainer.x=[[[")
        assert f"at most {MAX_DEPTH} levels" in issue

    def test_long_extends_chain_stops_at_the_limit(self, project: Path, cli: CliRunner) -> None:
        for index in range(1200):
            write(project, f"c{index}.toml", f'extends = "c{index + 1}.toml"\n')
        result = cli("validate", "-c", "c0.toml")
        assert result.exit_code == 2
        assert (
            f"c{MAX_EXTENDS - 1}.toml:1:11: extends: `extends` chains more than {MAX_EXTENDS} files"
            in result.stderr
        )
        assert "RecursionError" not in result.stderr


class TestAliasBombs:
    @pytest.mark.parametrize(
        "text",
        [
            billion_laughs(),
            billion_laughs(10, 9),
            # Merge keys repeat a mapping too: every level doubles the one below.
            "a0: &a0 {k: v}\n"
            + "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}\n" for i in range(1, 40)),
        ],
        ids=["9^9-values", "9^10-values", "merge-keys"],
    )
    def test_alias_bomb_is_refused_fast(self, project: Path, cli: CliRunner, text: str) -> None:
        write(project, "arkor.yaml", text)
        started = time.monotonic()
        result = cli("validate")
        elapsed = time.monotonic() - started
        assert result.exit_code == 2
        assert f"expand to more than {MAX_ALIAS_NODES:,} values" in result.stderr
        assert "arkor.yaml:" in result.stderr
        assert elapsed < 0.5

    def test_alias_inside_its_own_anchor_is_refused(self, project: Path) -> None:
        write(project, "arkor.yaml", "a: &x [1, *x]\n")
        assert only_issue().startswith("arkor.yaml:1:11: the alias `*x` sits inside the value")

    def test_a_problem_in_an_aliased_value_is_reported_once(self, project: Path) -> None:
        write(project, "arkor.yaml", "a: &x {k: !foo 1}\nb: *x\nc: {<<: *x}\n")
        assert only_issue().startswith("arkor.yaml:1:11: the YAML tag `!foo` is not supported")

    def test_ordinary_aliases_and_merge_keys_work(self, project: Path) -> None:
        write(
            project,
            "arkor.yaml",
            "trainer:\n  <<: &common {model: m, batch_size: 3}\n  name: demo\n  batch_size: 5\n"
            "  dataset: {type: huggingface, name: a/b}\n",
        )
        trainer = load_config().config.trainer
        assert (trainer.model, trainer.batch_size) == ("m", 5)


class TestLocations:
    @pytest.mark.parametrize("key", ["on", "~", "0x10", "yes", "1"])
    def test_yaml_keys_are_the_text_written(
        self, project: Path, monkeypatch: pytest.MonkeyPatch, key: str
    ) -> None:
        monkeypatch.delenv("UNSET_FOR_TEST", raising=False)
        write(project, "arkor.yaml", YAML_BASE + f"{key}:\n  k: ${{env:UNSET_FOR_TEST}}\n")
        assert only_issue().startswith(f"arkor.yaml:6:6: {key}.k: environment variable")

    def test_yaml_dates_stay_text(self, project: Path) -> None:
        write(project, "arkor.yaml", YAML_BASE.replace("name: demo", "name: 2024-01-01"))
        assert load_config().config.trainer.name == "2024-01-01"

    @pytest.mark.parametrize(
        ("text", "where"),
        [
            ('[trainer]\nname = "x"\nmodules = [1,\n', "arkor.toml:3:14"),
            ("[trainer", "arkor.toml:1:9"),
        ],
    )
    def test_toml_error_at_the_end_of_the_document_is_located(
        self, project: Path, text: str, where: str
    ) -> None:
        write(project, "arkor.toml", text)
        issue = only_issue()
        assert issue.startswith(f"{where}: TOML syntax error:")
        assert "at the end of the file" in issue

    def test_extends_suffix_is_checked_before_reading(self, project: Path) -> None:
        os.mkfifo(project / "base.json")  # reading a FIFO would block forever
        write(project, "arkor.toml", '\nextends = "base.json"\n[trainer]\nname = "x"\n')
        issue = only_issue()
        assert issue.startswith("arkor.toml:2:11: extends: the extended file base.json is not")

    def test_extends_of_a_system_file_points_at_the_extends_line(self, project: Path) -> None:
        write(project, "arkor.toml", '\nextends = "/etc/passwd"\n')
        issue = only_issue()
        assert issue.startswith("arkor.toml:2:11: extends: the extended file /etc/passwd")
        assert ".toml, .yaml or .yml" in issue

    def test_extends_of_something_not_a_file_is_refused_unread(self, project: Path) -> None:
        os.mkfifo(project / "base.toml")
        write(project, "arkor.toml", 'extends = "base.toml"\n')
        assert "is not a regular file" in only_issue()


class TestPyproject:
    @pytest.mark.parametrize(
        "text", ['tool = 5\n[project]\nname = "arkor-demo"\n', "[tool]\narkor = 5\n"]
    )
    def test_tool_that_is_not_a_table_does_not_break_discovery(
        self, project: Path, text: str
    ) -> None:
        write(project, "pyproject.toml", text)
        minimal_project(project)
        assert load_config().path.name == "arkor.toml"

    def test_tool_arkor_that_is_not_a_table_is_located(self, project: Path) -> None:
        write(project, "pyproject.toml", '[project]\nname = "x"\n[tool]\narkor = 5\n')
        assert only_issue("pyproject.toml").startswith(
            "pyproject.toml:4:1: no [tool.arkor] table here."
        )


class TestWholeReferences:
    """A value that is one whole ``${env:…}`` reference takes the type the schema expects."""

    def test_default_becomes_an_integer(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("STEPS", raising=False)
        minimal_project(project, MINIMAL_TOML.replace("10", '"${env:STEPS:-7}"'))
        assert load_config().config.trainer.max_steps == 7

    def test_numbers_and_booleans_from_the_environment(self, project: Path) -> None:
        minimal_project(
            project,
            MINIMAL_TOML.replace(
                "max_steps = 10",
                'max_steps = "${env:STEPS}"\nlearning_rate = "${env:LR}"\ndry_run = "${env:DRY}"',
            ),
        )
        trainer = load_config(env={"STEPS": "12", "LR": "5e-5", "DRY": "true"}).config.trainer
        assert (trainer.max_steps, trainer.learning_rate, trainer.dry_run) == (12, 5e-5, True)

    def test_string_fields_stay_strings(self, project: Path) -> None:
        minimal_project(project, MINIMAL_TOML.replace('"demo"', '"${env:RUN}"'))
        assert load_config(env={"RUN": "123"}).config.trainer.name == "123"

    def test_text_inside_a_longer_string_is_not_converted(self, project: Path) -> None:
        minimal_project(project, MINIMAL_TOML.replace("10", '"1${env:STEPS}"'))
        with pytest.raises(ConfigError) as error:
            load_config(env={"STEPS": "0"})
        assert 'expected an integer, got the string "10"' in str(error.value)

    def test_a_value_that_is_not_a_number_names_the_reference(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("STEPS", "seven")
        minimal_project(project, MINIMAL_TOML.replace("10", '"${env:STEPS}"'))
        assert only_issue() == (
            'arkor.toml:4:13: trainer.max_steps: expected an integer, got the string "seven". '
            "The value comes from `${env:STEPS}`: set the variable (or the default after `:-`) "
            "to a valid value."
        )

    def test_extended_file_reference_is_typed_unless_overridden(self, project: Path) -> None:
        write(project, "base.toml", MINIMAL_TOML.replace("10", '"${env:STEPS}"'))
        write(project, "arkor.toml", 'extends = "base.toml"\n')
        assert load_config(env={"STEPS": "4"}).config.trainer.max_steps == 4


def test_set_of_an_unknown_table_blames_the_flag(project: Path, cli: CliRunner) -> None:
    minimal_project(project)
    result = cli("validate", "--set", "trainr.max_steps=10")
    assert result.exit_code == 2
    assert (
        "--set trainr.max_steps=10: trainr: unknown key `trainr` at the top level. "
        "Did you mean `trainer`?"
    ) in result.stderr
    assert "arkor.toml" not in result.stderr


YAML_SYNTAX = {
    "indented more": (
        "trainer:\n  name: x\n    model: y\n",
        "arkor.yaml:3:10",
        "this key is indented more than the key above it",
    ),
    "indented less": (
        "trainer:\n  name: x\n model: y\n",
        "arkor.yaml:3:2",
        "this line is not lined up with the keys above it",
    ),
    "tab": ("trainer:\n\tname: x\n", "arkor.yaml:2:1", "YAML indents with spaces only"),
    "unclosed quote": (
        'trainer:\n  name: "x\n  model: y\n',
        "arkor.yaml:2:9",
        "this quoted value is never closed",
    ),
    "unclosed bracket": (
        "trainer:\n  mods: [a, b\n  model: y\n",
        "arkor.yaml:2:9",
        "this `[` list is never closed",
    ),
    "unclosed brace": (
        "trainer:\n  d: {a: 1\n  model: y\n",
        "arkor.yaml:2:6",
        "this `{` mapping is never closed",
    ),
    "colon in a value": ("trainer:\n  name: a: b\n", "arkor.yaml:2:10", "Put the value in quotes"),
    "missing colon": (
        "trainer:\n  name x\n  model: y\n",
        "arkor.yaml:3:8",
        "the line above has no `:`",
    ),
    "undefined alias": ("trainer:\n  name: *foo\n", "arkor.yaml:2:9", "this alias names no anchor"),
    "two documents": ("a: 1\n---\nb: 2\n", "arkor.yaml:2:1", "a second YAML document"),
    "custom tag": ("a: !foo 1\n", "arkor.yaml:1:4", "is not supported"),
    "python tag": ("a: !!python/object:os.system x\n", "arkor.yaml:1:4", "is not supported"),
    "reserved character": ("a: @x\n", "arkor.yaml:1:4", "Put the value in quotes"),
    "windows path": ('a: "C:\\data"\n', "arkor.yaml:1:8", "Use single quotes"),
    "extra bracket": ("a: [1, 2]]\n", "arkor.yaml:1:10", "a closing bracket that closes nothing"),
    "duplicate anchor": (
        "a: &x 1\nb: &x 2\n",
        "arkor.yaml:2:4",
        "this anchor name is already used",
    ),
    "non-text key": ("? [a]\n: 1\n", "arkor.yaml:1:3", "a key must be plain text"),
    "stray text": ("x y\n# c\ntrainer:\n  a: 1\n", "arkor.yaml:1:1", "a value on its own"),
    "stray closing bracket": ("}\na: 1\n", "arkor.yaml:1:1", "a closing bracket with nothing"),
    "missing value": ("a: [,]\n", "arkor.yaml:1:5", "a value is missing here"),
    "block scalar": ("a: >x\n  b\n", "arkor.yaml:1:5", "after `|` or `>` only"),
    "lone surrogate": ('a: "\\ud800"\n', "arkor.yaml:1:4", "lone surrogate"),
    "number too long": ("a: " + "1" * 5000 + "\n", "arkor.yaml:1:4", "cannot be read as int"),
}


@pytest.mark.parametrize("case", list(YAML_SYNTAX), ids=list(YAML_SYNTAX))
def test_yaml_errors_say_what_to_fix(project: Path, cli: CliRunner, case: str) -> None:
    text, where, words = YAML_SYNTAX[case]
    write(project, "arkor.yaml", text)
    result = cli("validate")
    assert result.exit_code == 2
    assert f"{where}: " in result.stderr
    assert words in result.stderr
    for raw in ("<block", "while parsing", "while scanning", "found character"):
        assert raw not in result.stderr
