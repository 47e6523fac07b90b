"""``arkor models import | list | remove``: output, exit codes, and a light ``list``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arkor._home import arkor_home
from tests.utils.cli import CliRunner
from tests.utils.requires import need
from tests.utils.tiny_gguf import build_tiny_gguf
from tests.utils.tiny_model import build_tiny_model

need("torch", "building the tiny model needs the local extra")

PROBE = """\
import json
import sys
from arkor.cli.main import run
codes = [run(args) for args in {commands!r}]
print(json.dumps({{"codes": codes, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}}))
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tiny_model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_import_list_remove(cli: CliRunner, tiny_model: Path) -> None:
    """The whole round trip a user makes, in the order they make it."""
    empty = cli("models", "list")
    assert empty.exit_code == 0
    assert "No models in the store" in empty.stdout and "arkor models import" in empty.stdout

    imported = cli("models", "import", str(tiny_model), "--name", "tests/tiny")
    assert imported.exit_code == 0, imported.stderr
    stored = arkor_home() / "models" / "tests--tiny"
    assert imported.stdout.startswith("✓ Imported tests/tiny (")
    assert f"stored at  {stored}" in imported.stdout
    assert 'model = "tests/tiny"' in imported.stdout
    assert "Copying" in imported.stderr

    listed = cli("models", "list")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "SIZE", "SOURCE"]
    assert row.startswith("tests/tiny ") and row.endswith(str(tiny_model.resolve()))
    assert " kB " in row

    as_json = cli("models", "list", "--json")
    document = json.loads(as_json.stdout)
    assert document["store"] == str(arkor_home() / "models")
    [model] = document["models"]
    assert model["name"] == "tests/tiny" and model["kind"] == "folder"
    assert model["path"] == str(stored) and model["size"] > 0

    removed = cli("models", "remove", "tests/tiny")
    assert removed.exit_code == 0
    assert removed.stdout.startswith("✓ Removed tests/tiny (")
    assert not stored.exists()
    assert json.loads(cli("models", "list", "--json").stdout)["models"] == []


def test_import_json_output(cli: CliRunner, tiny_model: Path) -> None:
    result = cli("models", "import", str(tiny_model), "-n", "tests/tiny", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["name"] == "tests/tiny"


def test_importing_a_gguf_says_it_converts_and_takes_a_while(
    cli: CliRunner, tiny_gguf: Path
) -> None:
    result = cli("models", "import", str(tiny_gguf), "--name", "tests/tiny-gguf")
    assert result.exit_code == 0, result.stderr
    assert "Converting tiny.gguf into a transformers model folder" in result.stderr
    assert "takes a while" in result.stderr
    assert "✓ Imported tests/tiny-gguf" in result.stdout


def test_removing_an_unknown_id_lists_the_known_ones(cli: CliRunner, tiny_model: Path) -> None:
    cli("models", "import", str(tiny_model), "--name", "tests/tiny")
    result = cli("models", "remove", "tests/other")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: No model `tests/other` in the model store")
    assert "Stored ids: `tests/tiny`." in result.stderr
    assert "Traceback" not in result.stderr


def test_an_existing_id_needs_force(cli: CliRunner, tiny_model: Path) -> None:
    assert cli("models", "import", str(tiny_model), "--name", "tests/tiny").exit_code == 0
    again = cli("models", "import", str(tiny_model), "--name", "tests/tiny")
    assert again.exit_code == 2
    assert "--force" in again.stderr
    assert (
        cli("models", "import", str(tiny_model), "--name", "tests/tiny", "--force").exit_code == 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "not an id"], "is not a valid model id"),
        (["--name", "a/b/c"], "is not a valid model id"),
    ],
)
def test_bad_ids_exit_2(cli: CliRunner, tiny_model: Path, args: list[str], message: str) -> None:
    result = cli("models", "import", str(tiny_model), *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_bad_sources_exit_2(cli: CliRunner, project: Path) -> None:
    (project / "empty").mkdir()
    result = cli("models", "import", "empty", "--name", "tests/tiny")
    assert result.exit_code == 2
    assert "has no config.json" in result.stderr
    missing = cli("models", "import", "nowhere", "--name", "tests/tiny")
    assert missing.exit_code == 2
    assert "no such file or folder" in missing.stderr


def test_import_needs_a_name(cli: CliRunner, tiny_model: Path) -> None:
    result = cli("models", "import", str(tiny_model))
    assert result.exit_code == 2
    assert "--name" in result.stderr


@pytest.mark.parametrize("command", ["", "import", "list", "remove"])
def test_help(cli: CliRunner, command: str) -> None:
    args = ["models", command, "-h"] if command else ["models", "-h"]
    result = cli(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: arkor models {command}".rstrip())


def test_root_help_lists_models(cli: CliRunner) -> None:
    assert "  models " in cli("--help").stdout


def test_list_and_remove_do_not_import_torch(
    cli: CliRunner, tiny_model: Path, project: Path
) -> None:
    """Managing the store must stay instant, and work where the ML libraries are absent."""
    assert cli("models", "import", str(tiny_model), "--name", "tests/tiny").exit_code == 0
    commands = [
        ["models", "list"],
        ["models", "list", "--json"],
        ["models", "remove", "tests/tiny"],
    ]
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(commands=commands)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {"codes": [0, 0, 0], "heavy": []}
