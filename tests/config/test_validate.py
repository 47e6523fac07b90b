"""Validation reports every error at once, located, with what was expected and a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.config import ConfigError, load_config
from tests.utils.projects import write

BROKEN_TOML = """\
[trainer]
name = "demo"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
max_step = 10
batch_size = 0
lr_scheduler_type = "cosin"

[trainer.dataset]
type = "huggingface"
name = "arkorlab/triage-demo"
spilt = "train"

[trainer.lora]
r = "8"
dropuot = 0.1

[trainer.callbacks]
on_log = "not a path"

[cloud]
ulr = "http://127.0.0.1:8765"
"""


def located(config: str = "arkor.toml") -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(config)
    return [str(issue) for issue in error.value.issues]


def test_every_error_is_reported_at_once_in_document_order(project: Path) -> None:
    write(project, "arkor.toml", BROKEN_TOML)
    lines = located()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "arkor.toml:4:1",
        "arkor.toml:5:14",
        "arkor.toml:6:21",
        "arkor.toml:11:1",
        "arkor.toml:14:5",
        "arkor.toml:15:1",
        "arkor.toml:18:10",
        "arkor.toml:21:1",
    ]


def test_misspelt_keys_get_did_you_mean_at_every_depth(project: Path) -> None:
    write(project, "arkor.toml", BROKEN_TOML)
    with pytest.raises(ConfigError) as error:
        load_config()
    suggestions = {issue.path: issue.suggestion for issue in error.value.issues if issue.suggestion}
    assert suggestions == {
        ("trainer", "max_step"): "max_steps",
        ("trainer", "dataset", "spilt"): "split",
        ("trainer", "lora", "dropuot"): "dropout",
        ("cloud", "ulr"): "url",
    }
    assert "Did you mean `max_steps`?" in str(error.value)


def test_messages_say_what_was_expected(project: Path) -> None:
    write(project, "arkor.toml", BROKEN_TOML)
    text = "\n".join(located())
    assert "trainer.batch_size: must be at least 1, got 0." in text
    assert 'trainer.lora.r: expected an integer, got the string "8".' in text
    assert 'trainer.lr_scheduler_type: expected one of "linear", "cosine"' in text
    assert 'expected a dotted import path such as `"my_project.callbacks:on_log"`' in text


def test_unknown_top_level_key(project: Path) -> None:
    write(project, "arkor.toml", '[trainr]\nname = "x"\n')
    lines = located()
    assert (
        "arkor.toml:1:1: trainr: unknown key `trainr` at the top level. Did you mean `trainer`?"
        in lines
    )
    assert "arkor.toml:1:1: missing required key `trainer` at the top level." in lines


def test_unknown_key_without_close_match_lists_allowed_keys(project: Path) -> None:
    write(
        project,
        "arkor.toml",
        '[trainer]\nname = "x"\nmodel = "m"\nzzz = 1\n[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
    )
    (line,) = located()
    assert "unknown key `zzz` in `trainer`. Allowed keys: name, model, dataset" in line


def test_missing_required_keys_point_at_their_table(project: Path) -> None:
    write(project, "arkor.toml", '\n[trainer]\nname = "x"\n')
    lines = located()
    assert lines == [
        "arkor.toml:2:1: trainer: missing required key `model` in `trainer`.",
        "arkor.toml:2:1: trainer: missing required key `dataset` in `trainer`.",
    ]


class TestDatasetUnion:
    def write_dataset(self, project: Path, body: str) -> None:
        write(
            project,
            "arkor.toml",
            f'[trainer]\nname = "x"\nmodel = "m"\n\n[trainer.dataset]\n{body}',
        )

    def test_keys_are_checked_against_the_chosen_type(self, project: Path) -> None:
        self.write_dataset(project, 'type = "blob"\nname = "a/b"\n')
        assert located() == [
            "arkor.toml:5:1: trainer.dataset: missing required key `url` in `trainer.dataset`.",
            "arkor.toml:7:1: trainer.dataset.name: unknown key `name` in `trainer.dataset`. "
            "Allowed keys: type, url, token.",
        ]

    def test_unknown_type_lists_the_choices_and_suggests(self, project: Path) -> None:
        self.write_dataset(project, 'type = "hugginface"\nname = "a/b"\n')
        (line,) = located()
        assert line.startswith("arkor.toml:6:8: trainer.dataset.type: `type` must be one of")
        assert '"huggingface", "blob", "file"' in line
        assert "Did you mean `huggingface`?" in line

    def test_missing_type(self, project: Path) -> None:
        self.write_dataset(project, 'name = "a/b"\n')
        (line,) = located()
        assert "missing required key `type`" in line

    def test_literal_token_is_refused_with_the_fix(self, project: Path) -> None:
        self.write_dataset(
            project, 'type = "blob"\nurl = "https://example.com/d.jsonl"\ntoken = "hf_live_123"\n'
        )
        (line,) = located()
        assert line.startswith("arkor.toml:8:9: trainer.dataset.token:")
        assert 'token = "${env:DATASET_TOKEN}"' in line
        assert "hf_live_123" not in line

    def test_format_table_is_checked_by_its_type(self, project: Path) -> None:
        write(
            project,
            "arkor.toml",
            '[trainer]\nname = "x"\nmodel = "m"\ndataset_format = { type = "prompt_completion", promt = "q" }\n'
            '[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
        )
        (line,) = located()
        assert "unknown key `promt` in `trainer.dataset_format`. Did you mean `prompt`?" in line

    def test_format_string_must_be_known(self, project: Path) -> None:
        write(
            project,
            "arkor.toml",
            '[trainer]\nname = "x"\nmodel = "m"\ndataset_format = "sharegpt"\n'
            '[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
        )
        (line,) = located()
        assert 'expected one of "auto", "chat", "prompt_completion", "text"' in line


def test_dataset_split_accepts_a_fraction_or_a_name(project: Path) -> None:
    base = '[trainer]\nname = "x"\nmodel = "m"\ndataset_split = {}\n[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n'
    write(project, "arkor.toml", base.format("0.1"))
    assert load_config().config.trainer.dataset_split == 0.1
    write(project, "arkor.toml", base.format('"test"'))
    assert load_config().config.trainer.dataset_split == "test"
    write(project, "arkor.toml", base.format("1.5"))
    (line,) = located()
    assert "must be less than 1, got 1.5." in line


def test_yaml_errors_are_located(project: Path) -> None:
    write(
        project,
        "arkor.yaml",
        "trainer:\n  name: x\n  model: m\n  max_stpes: 3\n  dataset:\n    type: file\n    path: 3\n",
    )
    assert located("arkor.yaml") == [
        "arkor.yaml:4:3: trainer.max_stpes: unknown key `max_stpes` in `trainer`. Did you mean `max_steps`?",
        "arkor.yaml:7:11: trainer.dataset.path: expected a string, got the number 3.",
    ]


def test_defaults_fill_a_minimal_config(project: Path) -> None:
    write(
        project,
        "arkor.toml",
        '[trainer]\nname = "x"\nmodel = "m"\n[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
    )
    trainer = load_config().config.trainer
    assert trainer.lora.r == 16
    assert trainer.lora.target_modules == "all-linear"
    assert trainer.dataset.split == "train"
    assert trainer.max_steps is None and trainer.num_train_epochs == 1.0
    assert trainer.callbacks.on_log is None


@pytest.mark.parametrize(
    "target",
    ["pkg.mod:fn", "pkg.mod.fn", "pkg:Class.method", "a.b.c.d:e"],
)
def test_callback_paths_accept_both_spellings(project: Path, target: str) -> None:
    write(
        project,
        "arkor.toml",
        f'[trainer]\nname = "x"\nmodel = "m"\n[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n'
        f'[trainer.callbacks]\non_log = "{target}"\n',
    )
    assert load_config().config.trainer.callbacks.on_log == target


@pytest.mark.parametrize("target", ["fn", "pkg.", "pkg:fn:x", "pkg mod:fn", "1pkg.mod:fn"])
def test_malformed_callback_paths_are_refused(project: Path, target: str) -> None:
    write(
        project,
        "arkor.toml",
        f'[trainer]\nname = "x"\nmodel = "m"\n[trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n'
        f'[trainer.callbacks]\non_log = "{target}"\n',
    )
    (line,) = located()
    assert line.startswith(
        "arkor.toml:8:10: trainer.callbacks.on_log: expected a dotted import path"
    )
