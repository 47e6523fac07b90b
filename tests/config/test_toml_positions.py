"""The TOML locator finds keys and values wherever TOML allows them to be written."""

from __future__ import annotations

import tomllib

from arkor.config._toml_positions import toml_positions

DOCUMENT = '''\
#:schema ./schema.json
[trainer]  # the run
name = "a # not a comment"
"quoted key" = 'lit'
notes = """
multi \\""" line
"""""
lora.r = 8
  max_steps=10
[trainer.dataset]
tm = ["a",
  # a comment inside an array
  "b", { x = 1 }]
it = { a = 1, b = { c = 2 } }
when = 1979-05-27 07:32:00Z

[[runs]]
k = 1
[[runs]]
k = 2
'''


def test_document_is_valid_toml() -> None:
    tomllib.loads(DOCUMENT)


def test_positions_of_keys_and_values() -> None:
    spans = toml_positions(DOCUMENT)
    expected = {
        ("trainer",): ((2, 1), (2, 1)),
        ("trainer", "name"): ((3, 1), (3, 8)),
        ("trainer", "quoted key"): ((4, 1), (4, 16)),
        ("trainer", "notes"): ((5, 1), (5, 9)),
        ("trainer", "lora", "r"): ((8, 6), (8, 10)),
        ("trainer", "max_steps"): ((9, 3), (9, 13)),
        ("trainer", "dataset", "tm", 1): ((13, 3), (13, 3)),
        ("trainer", "dataset", "tm", 2, "x"): ((13, 10), (13, 14)),
        ("trainer", "dataset", "it", "b", "c"): ((14, 21), (14, 25)),
        ("trainer", "dataset", "when"): ((15, 1), (15, 8)),
        ("runs", 0, "k"): ((18, 1), (18, 5)),
        ("runs", 1, "k"): ((20, 1), (20, 5)),
    }
    for path, (key, value) in expected.items():
        assert (spans[path].key, spans[path].value) == (key, value), path


def test_every_parsed_key_has_a_position() -> None:
    """Whatever tomllib parses, the locator can place."""

    def paths(node: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
        found: list[tuple[str | int, ...]] = []
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else []
        )
        for key, value in items:
            found.append((*prefix, key))
            found.extend(paths(value, (*prefix, key)))
        return found

    spans = toml_positions(DOCUMENT)
    missing = [path for path in paths(tomllib.loads(DOCUMENT)) if path not in spans]
    assert missing == []


def test_strings_that_look_like_syntax_do_not_confuse_it() -> None:
    text = "a = \"x = [1, {\"\nb = '] } #'\nc = 3\n"
    spans = toml_positions(text)
    assert spans[("c",)].key == (3, 1)
