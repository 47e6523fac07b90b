"""Property: any bytes as ``arkor.toml`` / ``arkor.yaml`` give exit 0 or a located error, exit 2.

The documents are drawn from random bytes and, mostly, from near-valid ones: the real
configs ``arkor init`` writes, mutated with the tokens that break parsers (brackets,
quotes, indentation, anchors and aliases, control and non-UTF-8 bytes, ``${env:…}``),
plus deep nesting and alias bombs. Each is checked in-process through
:func:`arkor.manifest.validate_project`, the function ``arkor validate`` calls; one
subprocess run checks the CLI's exit code and stderr. Derandomized and bounded, so CI
sees the same examples every run and the module stays within a few seconds.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from arkor.config import CONFIG_FILENAMES, ConfigError
from arkor.manifest import validate_project
from arkor.scaffold import list_templates, scaffold
from tests.utils.cli import run_process

NAMES = ("arkor.toml", "arkor.yaml")
TOKENS = [
    b"[",
    b"]",
    b"[[",
    b"{",
    b"}",
    b'"',
    b"'",
    b'"""',
    b":",
    b": ",
    b"=",
    b" = ",
    b",",
    b".",
    b"#",
    b"\n",
    b"\r\n",
    b"\t",
    b"  ",
    b"    ",
    b"- ",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"? ",
    b"---\n",
    b"!!python/object:os.system ",
    b"!!binary ",
    b"!!int ",
    b"${env:ARKOR_UNSET}",
    b"${env:ARKOR_UNSET:-3}",
    b"$${env:X}",
    b"\\ud800",
    b"\\",
    b"\x00",
    b"\x07",
    b"\x1b",
    b"\x7f",
    b"\xc2\x85",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"on",
    b"~",
    b"0x10",
    b"1e999",
    b"nan",
    b"-0",
    b"99999999999999999999999",
    b"2024-01-01",
    b'extends = "base.toml"\n',
    b"extends: /etc/passwd\n",
    b'extends = "arkor.toml"\n',
    b"trainer.max_steps = 3\n",
    b"[trainer.dataset]\n",
    b"[[trainer]]\n",
    b"callbacks:\n  on_log: x.y:z\n",
]
VALUES = [
    b"!!int x",
    b"!!float x",
    b"!!bool x",
    b"!!timestamp x",
    b"!!binary x",
    b"!!set {a}",
    b"!!omap [a]",
    b"!foo x",
    b"1" * 5000,
    b'"\\ud800"',
    b'"\\x00"',
    b"&a x",
    b"*a",
    b"*nowhere",
    b"[*a, *a]",
    b"{<<: *a}",
    b"2024-13-45",
    b"0o17",
    b".inf",
    b"[1, [2, [3]]]",
    b'"${env:ARKOR_UNSET}"',
    b'"${env:ARKOR_UNSET:-7}"',
    b'"${env:ARKOR_UNSET:-true}"',
    b'"${env:ARKOR_UNSET:-[1]}"',
]

SETTINGS = settings(
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing bomb would rerun for minutes
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def real_configs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """The config of every template in both formats, as ``arkor init`` writes them."""
    configs: list[tuple[str, bytes]] = []
    for template in list_templates():
        for config_format in ("toml", "yaml"):
            folder = tmp_path_factory.mktemp(f"{template.id}-{config_format}")
            scaffold(
                folder, template=template, name="fuzz", agents_md=False, config_format=config_format
            )
            name = f"arkor.{config_format}"
            configs.append((name, (folder / name).read_bytes()))
    return configs


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose data file and callbacks package exist, so a valid config validates."""
    folder = tmp_path_factory.mktemp("fuzz-project")
    scaffold(folder, template=list_templates()[0], name="fuzz", agents_md=False)
    return folder


@st.composite
def mutation(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` with one token inserted (anywhere, or where a value starts), a span deleted, or
    a line repeated."""
    kind = draw(st.sampled_from(["insert", "value", "replace", "delete", "repeat"]))
    at = draw(st.integers(0, len(text)))
    if kind == "value":
        starts = [m.end() for m in re.finditer(rb"(: |= )", text)] or [at]
        at = draw(st.sampled_from(starts))
    if kind == "delete":
        return text[:at] + text[at + draw(st.integers(1, 40)) :]
    if kind == "repeat":
        lines = text.splitlines(keepends=True) or [b""]
        index = min(at, len(lines) - 1)
        return b"".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    token = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=4)))
    end = at + (draw(st.integers(1, 8)) if kind == "replace" else 0)
    return text[:at] + token + text[end:]


@st.composite
def mutated_config(draw: st.DrawFn, configs: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    name, text = draw(st.sampled_from(configs))
    for _ in range(draw(st.integers(0, 4))):
        text = draw(mutation(text))
    return draw(st.sampled_from([name, name, *NAMES])), text


@st.composite
def odd_values(draw: st.DrawFn, configs: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A real config whose values are replaced by tags, anchors, aliases, odd numbers, references."""
    name, text = draw(st.sampled_from(configs))
    for _ in range(draw(st.integers(1, 3))):
        values = [m for m in re.finditer(rb"(?m)(?<=: |= )[^\n#]+$", text)]
        if not values:
            break
        match = draw(st.sampled_from(values))
        text = text[: match.start()] + draw(st.sampled_from(VALUES)) + text[match.end() :]
    return name, text


@st.composite
def deep_document(draw: st.DrawFn) -> tuple[str, bytes]:
    """Nesting around the limit, and far past it: hypothesis raises the recursion limit while
    it runs a test, so only thousands of levels would overflow here."""
    depth = draw(st.one_of(st.integers(1, 40), st.integers(2000, 3000)))
    shape = draw(
        st.sampled_from(["toml-array", "toml-table", "toml-dotted", "yaml-flow", "yaml-block"])
    )
    if shape == "toml-array":
        text = "x = " + "[" * depth + "]" * draw(st.integers(0, depth))
    elif shape == "toml-table":
        text = "x = " + "{a = " * depth + "1" + "}" * draw(st.integers(0, depth))
    elif shape == "toml-dotted":
        text = "x" + ".x" * depth + " = 1"
    elif shape == "yaml-flow":
        text = "x: " + "[" * depth + "]" * draw(st.integers(0, depth))
    else:  # block nesting costs depth² bytes of indentation: 600 levels are 360 kB
        text = "".join("  " * level + f"k{level}:\n" for level in range(min(depth, 600)))
    return ("arkor.toml" if shape.startswith("toml") else "arkor.yaml"), text.encode() + b"\n"


@st.composite
def alias_document(draw: st.DrawFn) -> tuple[str, bytes]:
    """A ladder of anchors, each repeating the one below: from harmless to a bomb."""
    levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    merge = draw(st.booleans())
    lines = ["l0: &l0 {k: v}" if merge else "l0: &l0 [lol]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * width)
        body = f"{{<<: [{aliases}]}}" if merge else f"[{aliases}]"
        lines.append(f"l{level}: &l{level} {body}")
    return "arkor.yaml", ("\n".join(lines) + "\n").encode()


@st.composite
def with_control_byte(draw: st.DrawFn, configs: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    name, text = draw(st.sampled_from(configs))
    at = draw(st.integers(0, len(text)))
    byte = bytes([draw(st.sampled_from([*range(0x20), 0x7F, 0x80, 0xA0, 0xFE, 0xFF]))])
    return name, text[:at] + byte + text[at:]


FAMILIES = {
    "random-bytes": (
        60,
        lambda configs: st.tuples(st.sampled_from(NAMES), st.binary(max_size=300)),
    ),
    "mutated-configs": (200, mutated_config),
    "odd-values": (100, odd_values),
    "deep-nesting": (40, lambda configs: deep_document()),
    "aliases": (40, lambda configs: alias_document()),
    "control-bytes": (40, with_control_byte),
}
"""Each family of documents, with how many examples it gets."""


def check_document(folder: Path, name: str, content: bytes) -> None:
    """Validate ``content`` as ``folder/name``: it passes, or every issue has file:line:col."""
    for candidate in CONFIG_FILENAMES:
        (folder / candidate).unlink(missing_ok=True)
    (folder / name).write_bytes(content)
    started = time.monotonic()
    try:
        validate_project(cwd=folder, env={})
    except ConfigError as error:
        assert error.exit_code == 2
        assert error.issues, str(error)
        for issue in error.issues:
            location = issue.location
            assert location.line is not None and location.column is not None, str(issue)
            assert location.source.endswith(name) or location.source.endswith(".toml"), str(issue)
        str(error).encode("utf-8", "backslashreplace")
    assert time.monotonic() - started < 5


def test_the_real_configs_are_valid(
    real_configs: list[tuple[str, bytes]], fuzz_project: Path
) -> None:
    """The unmutated starting points pass, so mutations start from exit 0."""
    for name, content in real_configs:
        for candidate in CONFIG_FILENAMES:
            (fuzz_project / candidate).unlink(missing_ok=True)
        (fuzz_project / name).write_bytes(content)
        assert validate_project(cwd=fuzz_project, env={}).config.trainer.name == "fuzz"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_any_document_is_valid_or_a_located_error(
    family: str, real_configs: list[tuple[str, bytes]], fuzz_project: Path
) -> None:
    examples, strategy = FAMILIES[family]

    @settings(SETTINGS, max_examples=examples)
    @given(document=strategy(real_configs))
    def check(document: tuple[str, bytes]) -> None:
        check_document(fuzz_project, *document)

    check()


def test_cli_gives_exit_2_and_no_traceback(tmp_path: Path) -> None:
    """The console entry point on a hostile file: one located paragraph, exit 2."""
    (tmp_path / "arkor.yaml").write_bytes(
        b"a: &a [x, x, x, x, x, x, x, x, x]\n"
        + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [".encode()
            + b", ".join([f"*{chr(97 + i)}".encode()] * 9)
            + b"]\n"
            for i in range(8)
        )
    )
    result = run_process("validate", cwd=tmp_path)
    assert result.exit_code == 2
    assert "arkor.yaml:" in result.stderr and "alias bomb" in result.stderr
    assert "Traceback" not in result.stderr and "Unexpected error" not in result.stderr
