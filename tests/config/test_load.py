"""Discovery, parsing, ``extends``, ``${env:…}`` interpolation and ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.config import ConfigError, load_config, load_raw
from tests.utils.projects import MINIMAL_TOML, minimal_project, write

BASE = """\
[trainer]
name = "base"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
learning_rate = 1e-4
batch_size = 2

[trainer.dataset]
type = "huggingface"
name = "arkorlab/triage-demo"
"""


def issues_of(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(issue) for issue in error.value.issues]


class TestDiscovery:
    def test_finds_arkor_toml(self, project: Path) -> None:
        minimal_project(project)
        assert load_config().path == project / "arkor.toml"

    @pytest.mark.parametrize("name", ["arkor.yaml", "arkor.yml"])
    def test_finds_yaml(self, project: Path, name: str) -> None:
        write(
            project,
            name,
            "trainer:\n  name: y\n  model: m\n  dataset: {type: huggingface, name: a/b}\n",
        )
        loaded = load_config()
        assert loaded.path.name == name
        assert loaded.config.trainer.name == "y"

    def test_finds_tool_arkor_in_pyproject(self, project: Path) -> None:
        write(
            project,
            "pyproject.toml",
            '[project]\nname = "x"\n\n[tool.arkor.trainer]\nname = "p"\nmodel = "m"\n'
            '[tool.arkor.trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
        )
        assert load_config().config.trainer.name == "p"

    def test_pyproject_without_tool_arkor_is_not_a_candidate(self, project: Path) -> None:
        write(project, "pyproject.toml", '[project]\nname = "x"\n')
        minimal_project(project)
        assert load_config().path.name == "arkor.toml"

    def test_two_candidates_is_an_error_naming_both(self, project: Path) -> None:
        minimal_project(project)
        write(project, "arkor.yaml", "trainer: {}\n")
        with pytest.raises(ConfigError) as error:
            load_config()
        assert "arkor.toml" in str(error.value) and "arkor.yaml" in str(error.value)

    def test_no_config_says_how_to_make_one(self) -> None:
        with pytest.raises(ConfigError) as error:
            load_config()
        assert "arkor init" in str(error.value)

    def test_explicit_path_wins_over_discovery(self, project: Path) -> None:
        minimal_project(project)
        write(project, "arkor.yaml", "x: 1\n")
        other = write(project, "configs/big.toml", MINIMAL_TOML.replace('"demo"', '"big"'))
        assert load_config(other).config.trainer.name == "big"

    def test_missing_explicit_path(self) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            load_config("nope.toml")


class TestSyntaxErrors:
    def test_toml_syntax_error_is_located(self, project: Path) -> None:
        write(project, "arkor.toml", '[trainer]\nname = "x"\nmodel = \n')
        with pytest.raises(ConfigError) as error:
            load_config()
        (issue,) = error.value.issues
        assert (issue.location.source, issue.location.line) == ("arkor.toml", 3)
        assert "TOML syntax error" in issue.message

    def test_yaml_syntax_error_is_located(self, project: Path) -> None:
        write(project, "arkor.yaml", "trainer:\n  name: x\n  model: [unclosed\n")
        with pytest.raises(ConfigError) as error:
            load_config()
        (issue,) = error.value.issues
        assert issue.location.source == "arkor.yaml"
        assert (issue.location.line, issue.location.column) == (3, 10)
        assert "this `[` list is never closed" in issue.message
        assert "The config is not valid YAML" in str(error.value)

    def test_yaml_duplicate_keys_are_reported(self, project: Path) -> None:
        write(project, "arkor.yaml", "trainer:\n  name: a\n  name: b\n")
        with pytest.raises(ConfigError) as error:
            load_config()
        assert [str(issue.location) for issue in error.value.issues] == ["arkor.yaml:3:3"]
        assert "duplicate key" in error.value.issues[0].message

    def test_yaml_top_level_must_be_a_mapping(self, project: Path) -> None:
        write(project, "arkor.yaml", "- a\n- b\n")
        with pytest.raises(ConfigError, match="mapping at the top level"):
            load_config()

    def test_unknown_extension(self, project: Path) -> None:
        write(project, "arkor.json", "{}")
        with pytest.raises(ConfigError, match=r"\.toml, \.yaml or \.yml"):
            load_config("arkor.json")


class TestExtends:
    def test_file_overrides_extended_file_key_by_key(self, project: Path) -> None:
        write(project, "base.toml", BASE)
        write(
            project,
            "arkor.toml",
            'extends = "base.toml"\n[trainer]\nname = "child"\nbatch_size = 8\n',
        )
        trainer = load_config().config.trainer
        assert (trainer.name, trainer.batch_size, trainer.learning_rate) == ("child", 8, 1e-4)
        assert trainer.dataset.type == "huggingface"

    def test_path_is_relative_to_the_extending_file(self, project: Path) -> None:
        write(project, "shared/base.toml", BASE)
        write(project, "shared/mid.toml", 'extends = "base.toml"\n[trainer]\nbatch_size = 3\n')
        write(project, "arkor.toml", 'extends = "shared/mid.toml"\n[trainer]\nname = "c"\n')
        loaded = load_config()
        assert loaded.config.trainer.batch_size == 3
        assert [s.path.name for s in loaded.sources] == ["arkor.toml", "mid.toml", "base.toml"]
        assert [s.role for s in loaded.sources] == ["config", "extends", "extends"]

    def test_yaml_can_extend_toml(self, project: Path) -> None:
        write(project, "base.toml", BASE)
        write(project, "arkor.yaml", "extends: base.toml\ntrainer:\n  name: from-yaml\n")
        assert load_config().config.trainer.name == "from-yaml"

    def test_changing_a_dataset_type_replaces_the_table(self, project: Path) -> None:
        write(project, "base.toml", BASE)
        write(
            project,
            "arkor.toml",
            'extends = "base.toml"\n[trainer.dataset]\ntype = "file"\npath = "d.jsonl"\n',
        )
        dataset = load_config().config.trainer.dataset
        assert dataset.type == "file"
        assert dataset.path == "d.jsonl"

    def test_cycle_is_an_error(self, project: Path) -> None:
        write(project, "a.toml", 'extends = "b.toml"\n')
        write(project, "b.toml", 'extends = "a.toml"\n')
        with pytest.raises(ConfigError) as error:
            load_config("a.toml")
        assert "cycle" in str(error.value)
        assert "a.toml → b.toml → a.toml" in str(error.value)

    def test_missing_extended_file_is_located(self, project: Path) -> None:
        write(project, "arkor.toml", '\nextends = "gone.toml"\n')
        with pytest.raises(ConfigError) as error:
            load_config()
        assert issues_of(error)[0].startswith("arkor.toml:2:")
        assert "gone.toml" in issues_of(error)[0]

    def test_error_names_the_file_that_holds_the_value(self, project: Path) -> None:
        write(project, "base.toml", BASE.replace("batch_size = 2", 'batch_size = "two"'))
        write(project, "arkor.toml", 'extends = "base.toml"\n[trainer]\nname = "c"\n')
        with pytest.raises(ConfigError) as error:
            load_config()
        assert issues_of(error) == [
            'base.toml:5:14: trainer.batch_size: expected an integer, got the string "two".'
        ]


class TestInterpolation:
    def test_env_value_is_substituted(self, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BASE_MODEL", "org/model-from-env")
        minimal_project(
            project,
            MINIMAL_TOML.replace('"HuggingFaceTB/SmolLM2-135M-Instruct"', '"${env:BASE_MODEL}"'),
        )
        assert load_config().config.trainer.model == "org/model-from-env"

    def test_default_is_used_when_unset(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("RUN_SUFFIX", raising=False)
        minimal_project(project, MINIMAL_TOML.replace('"demo"', '"demo-${env:RUN_SUFFIX:-local}"'))
        assert load_config().config.trainer.name == "demo-local"

    def test_missing_variable_is_located_and_explained(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
        minimal_project(project, MINIMAL_TOML.replace('"demo"', '"${env:NOT_SET_ANYWHERE}"'))
        with pytest.raises(ConfigError) as error:
            load_config()
        (issue,) = issues_of(error)
        assert issue.startswith("arkor.toml:2:8: trainer.name:")
        assert "NOT_SET_ANYWHERE is not set" in issue and ":-value" in issue

    def test_double_dollar_escapes(self, project: Path) -> None:
        minimal_project(project, MINIMAL_TOML.replace('"demo"', '"cost-$${env:X}"'))
        assert load_config().config.trainer.name == "cost-${env:X}"

    def test_secret_fields_keep_the_reference(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATA_TOKEN", "s3cr3t")
        write(
            project,
            "arkor.toml",
            '[trainer]\nname = "d"\nmodel = "m"\n[trainer.dataset]\ntype = "blob"\n'
            'url = "https://example.com/d.jsonl"\ntoken = "${env:DATA_TOKEN}"\n',
        )
        assert load_config().config.trainer.dataset.token == "${env:DATA_TOKEN}"

    def test_env_mapping_can_be_injected(self, project: Path) -> None:
        minimal_project(project, MINIMAL_TOML.replace('"demo"', '"${env:WHO}"'))
        assert load_config(env={"WHO": "injected"}).config.trainer.name == "injected"


class TestOverrides:
    def test_values_are_toml_literals(self, project: Path) -> None:
        minimal_project(project)
        trainer = load_config(
            overrides=[
                "trainer.max_steps=7",
                "trainer.dry_run=true",
                "trainer.lora.target_modules=['q_proj']",
            ]
        ).config.trainer
        assert (trainer.max_steps, trainer.dry_run, trainer.lora.target_modules) == (
            7,
            True,
            ["q_proj"],
        )

    def test_bare_text_is_a_string(self, project: Path) -> None:
        minimal_project(project)
        assert (
            load_config(overrides=["trainer.model=org/other-model"]).config.trainer.model
            == "org/other-model"
        )

    def test_override_beats_file_and_extended_file(self, project: Path) -> None:
        write(project, "base.toml", BASE)
        write(
            project, "arkor.toml", 'extends = "base.toml"\n[trainer]\nname = "c"\nbatch_size = 8\n'
        )
        assert load_config(overrides=["trainer.batch_size=16"]).config.trainer.batch_size == 16

    def test_bad_override_value_is_reported_at_the_flag(self, project: Path) -> None:
        minimal_project(project)
        with pytest.raises(ConfigError) as error:
            load_config(overrides=["trainer.max_steps=many"])
        assert issues_of(error) == [
            '--set trainer.max_steps=many: trainer.max_steps: expected an integer, got the string "many".'
        ]

    @pytest.mark.parametrize("override", ["trainer.max_steps", "=3", "trainer..x=1"])
    def test_malformed_override(self, project: Path, override: str) -> None:
        minimal_project(project)
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            load_config(overrides=[override])

    def test_cannot_set_inside_a_scalar(self, project: Path) -> None:
        minimal_project(project)
        with pytest.raises(ConfigError, match="not a table"):
            load_config(overrides=["trainer.name.x=1"])

    def test_unknown_override_key_gets_a_suggestion(self, project: Path) -> None:
        minimal_project(project)
        with pytest.raises(ConfigError) as error:
            load_config(overrides=["trainer.max_step=3"])
        assert error.value.issues[0].suggestion == "max_steps"


class TestPositions:
    def test_pyproject_positions_are_file_lines(self, project: Path) -> None:
        write(
            project,
            "pyproject.toml",
            '[project]\nname = "x"\n\n[tool.arkor.trainer]\nname = "p"\nmodel = "m"\nmax_stepz = 3\n'
            '[tool.arkor.trainer.dataset]\ntype = "huggingface"\nname = "a/b"\n',
        )
        with pytest.raises(ConfigError) as error:
            load_config()
        assert issues_of(error)[0].startswith("pyproject.toml:7:1: trainer.max_stepz:")

    def test_origins_cover_nested_keys(self, project: Path) -> None:
        minimal_project(project)
        raw = load_raw()
        assert str(raw.locate(("trainer", "dataset", "path"))) == "arkor.toml:8:8"
        assert str(raw.locate(("trainer", "dataset", "path"), at_key=True)) == "arkor.toml:8:1"
