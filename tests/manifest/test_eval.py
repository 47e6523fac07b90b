"""``[trainer.eval]`` at ``arkor validate`` and ``arkor build``: located errors, held-out rows by hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from arkor._formats import iter_file_rows
from arkor.evals import hold_out, row_sha256, rows_digest
from arkor.manifest import (
    MANIFEST_RELATIVE_PATH,
    build_project,
    check_staleness,
    compute_digest,
    read_manifest,
)
from tests.utils.cli import CliRunner
from tests.utils.projects import MINIMAL_TOML, write, write_jsonl

METRIC_MODULE = '''\
"""Custom metrics for the tests."""


def length_ratio(prediction, reference, row):
    return min(len(prediction), len(reference)) / max(len(prediction), len(reference), 1)


def one_argument(prediction):
    return 1.0
'''


def chat_rows(count: int) -> list[dict[str, Any]]:
    """``count`` distinct chat rows, each ending with an answer."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {n} + {n}?"},
                {"role": "assistant", "content": str(2 * n)},
            ]
        }
        for n in range(count)
    ]


def eval_project(root: Path, eval_table: str, *, rows: int = 20, top: str = "") -> str:
    """The minimal project (``rows`` distinct rows) with ``top`` in [trainer] and an eval table."""
    config = MINIMAL_TOML.replace("max_steps = 10\n", f"max_steps = 10\n{top}")
    config += "\n[trainer.eval]\n" + eval_table
    write_jsonl(root, "data/train.jsonl", chat_rows(rows))
    write(root, "arkor.toml", config)
    return config


def location_of(config: str, text: str, value: str | None = None) -> str:
    """``arkor.toml:LINE:COL`` of the value on the line starting with ``text``, the last such line
    (the eval table comes last); COL is where ``value`` starts, else just after ``= ``."""
    found = [
        (number, line)
        for number, line in enumerate(config.splitlines(), start=1)
        if line.startswith(text)
    ]
    assert found, f"{text!r} is not in the config"
    number, line = found[-1]
    column = line.index(value) + 1 if value is not None else line.index("=") + 3
    return f"arkor.toml:{number}:{column}"


def manifest_of(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST_RELATIVE_PATH).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("command", ["validate", "build"])
def test_held_out_and_path_together_is_located(project: Path, cli: CliRunner, command: str) -> None:
    config = eval_project(project, 'held_out = 0.2\npath = "data/eval.jsonl"\n')
    write_jsonl(project, "data/eval.jsonl", chat_rows(3))
    result = cli(command)
    assert result.exit_code == 2, result.stdout
    where = location_of(config, "held_out")
    assert f"{where}: trainer.eval.held_out: held_out and path are both set" in result.stderr


def test_held_out_that_differs_from_dataset_split_is_located(project: Path, cli: CliRunner) -> None:
    config = eval_project(project, "held_out = 0.2\n", top="dataset_split = 0.1\n")
    result = cli("build")
    assert result.exit_code == 2
    where = location_of(config, "held_out")
    assert f"{where}: trainer.eval.held_out: held_out = 0.2 differs from trainer.dataset_split" in (
        result.stderr
    )
    assert not (project / MANIFEST_RELATIVE_PATH).exists()


def test_held_out_equal_to_dataset_split_builds(project: Path, cli: CliRunner) -> None:
    eval_project(project, "held_out = 0.2\n", top="dataset_split = 0.2\n")
    assert cli("build").exit_code == 0


@pytest.mark.parametrize(
    ("eval_table", "top", "key", "line"),
    [
        ('held_out = "test"\n', "", "trainer.eval.held_out", "held_out"),
        ("rows = 8\n", 'dataset_split = "test"\n', "trainer.dataset_split", "dataset_split"),
    ],
    ids=["eval-held-out", "dataset-split"],
)
def test_a_split_name_without_splits_is_located(
    project: Path, cli: CliRunner, eval_table: str, top: str, key: str, line: str
) -> None:
    config = eval_project(project, eval_table, top=top)
    result = cli("validate")
    assert result.exit_code == 2
    assert f'{location_of(config, line)}: {key}: the evaluation asks for the split "test"' in (
        result.stderr
    )
    assert "only HuggingFace datasets have named splits" in result.stderr


@pytest.mark.parametrize(
    ("path", "problem"),
    [("data/missing.jsonl", "does not exist"), ("data/eval.txt", "unsupported eval file type")],
)
@pytest.mark.parametrize("command", ["validate", "build"])
def test_an_eval_file_that_cannot_be_read_is_located(
    project: Path, cli: CliRunner, command: str, path: str, problem: str
) -> None:
    config = eval_project(project, f'path = "{path}"\n')
    write(project, "data/eval.txt", "hello\n")
    result = cli(command)
    assert result.exit_code == 2
    assert f"{location_of(config, 'path')}: trainer.eval.path: " in result.stderr
    assert problem in result.stderr


def test_text_rows_are_refused_where_the_format_is_set(project: Path, cli: CliRunner) -> None:
    config = eval_project(project, "rows = 8\n", top='dataset_format = "text"\n')
    write_jsonl(project, "data/train.jsonl", [{"text": f"line {n}"} for n in range(5)])
    result = cli("validate")
    assert result.exit_code == 2
    where = location_of(config, "dataset_format")
    assert f"{where}: trainer.dataset_format: the rows are plain text" in result.stderr


def test_text_rows_found_by_build_are_refused(project: Path, cli: CliRunner) -> None:
    """With ``auto`` only reading the rows shows they are text: build says so."""
    eval_project(project, "rows = 8\n")
    write_jsonl(project, "data/train.jsonl", [{"text": f"line {n}"} for n in range(5)])
    assert cli("validate").exit_code == 0
    result = cli("build")
    assert result.exit_code == 2
    assert "trainer.dataset_format: the rows are plain text" in result.stderr


def test_an_eval_file_of_text_rows_is_located(project: Path, cli: CliRunner) -> None:
    config = eval_project(project, 'path = "data/eval.jsonl"\n')
    write_jsonl(project, "data/eval.jsonl", [{"text": "a"}, {"text": "b"}])
    result = cli("build")
    assert result.exit_code == 2
    where = location_of(config, "path")
    assert f"{where}: trainer.eval.path: the rows are plain text" in result.stderr


def test_one_row_cannot_be_split_into_training_and_held_out(project: Path, cli: CliRunner) -> None:
    config = eval_project(project, "rows = 8\n", rows=1)
    result = cli("build")
    assert result.exit_code == 2
    line = config.splitlines().index("[trainer.eval]") + 1
    assert f"arkor.toml:{line}:1: trainer.eval: the evaluation holds out a 0.1 fraction" in (
        result.stderr
    )
    assert "has 1 row, which training needs" in result.stderr


def test_repeated_rows_that_leave_nothing_to_train_on_are_located(
    project: Path, cli: CliRunner
) -> None:
    """Held-out rows are never trained on, copies included: all copies leave no training row."""
    config = eval_project(project, "held_out = 0.5\n")
    write_jsonl(project, "data/train.jsonl", chat_rows(1) * 6)
    result = cli("build")
    assert result.exit_code == 2
    assert f"{location_of(config, 'held_out')}: trainer.eval.held_out: every training row" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        ("nowhere_pkg.metrics:f1", "no module named `nowhere_pkg`"),
        ("demo_pkg.metrics:missing", "`demo_pkg.metrics` has no `missing`"),
        ("demo_pkg.metrics:one_argument", "must accept three arguments"),
    ],
    ids=["module", "function", "signature"],
)
def test_a_bad_metric_path_is_located_at_its_list_item(
    project: Path, cli: CliRunner, metric: str, problem: str
) -> None:
    config = eval_project(project, f'metrics = [\n  "exact_match",\n  "{metric}",\n]\n')
    write(project, "demo_pkg/__init__.py", "")
    write(project, "demo_pkg/metrics.py", METRIC_MODULE)
    result = cli("build")
    assert result.exit_code == 2
    line = config.splitlines().index(f'  "{metric}",') + 1
    assert f"arkor.toml:{line}:3: trainer.eval.metrics[1]: " in result.stderr
    assert problem in result.stderr


def test_validate_finds_a_missing_metric_module_without_running_code(
    project: Path, cli: CliRunner
) -> None:
    config = eval_project(project, 'metrics = ["rouge_l", "demo_pkg.nothere:f1"]\n')
    write(
        project, "demo_pkg/__init__.py", "import pathlib\npathlib.Path('executed').write_text('')\n"
    )
    result = cli("validate")
    assert result.exit_code == 2
    where = location_of(config, "metrics", '"demo_pkg')
    assert f"{where}: trainer.eval.metrics[1]: cannot find the module `demo_pkg.nothere`" in (
        result.stderr
    )
    assert not (project / "executed").exists()


def test_the_manifest_lists_the_held_out_rows_as_the_worker_chooses_them(
    project: Path, cli: CliRunner
) -> None:
    eval_project(project, "held_out = 0.25\nrows = 4\n", rows=23, top="seed = 7\n")
    assert cli("build").exit_code == 0
    rows = [row for _, row in iter_file_rows(project / "data" / "train.jsonl", "jsonl")]
    _, held = hold_out(len(rows), 0.25, 7)
    hashes = [row_sha256(rows[index]) for index in held]
    manifest = manifest_of(project)
    assert manifest["eval"]["heldOut"] == {
        "source": "dataset",
        "fraction": 0.25,
        "seed": 7,
        "totalRows": 23,
        "rowSha256": hashes,
        "rowsDigest": rows_digest(hashes),
    }
    spec = manifest["job"]["config"]["eval"]
    assert spec["heldOutSha256"] == rows_digest(hashes)
    assert spec["heldOut"] == 0.25
    assert spec["rows"] == 4


def test_the_default_held_out_fraction_is_written_out(project: Path, cli: CliRunner) -> None:
    """No held_out and no dataset_split: a tenth, said in the manifest rather than left implicit."""
    eval_project(project, 'metrics = ["exact_match", "rouge_l"]\n', rows=20)
    assert cli("build").exit_code == 0
    manifest = manifest_of(project)
    assert manifest["job"]["config"]["eval"]["heldOut"] == 0.1
    assert manifest["job"]["config"]["eval"]["metrics"] == ["exact_match", "rouge_l"]
    assert len(manifest["eval"]["heldOut"]["rowSha256"]) == 2


def test_building_twice_gives_the_same_bytes(project: Path, cli: CliRunner) -> None:
    eval_project(project, 'metrics = ["exact_match", "demo_pkg.metrics:length_ratio"]\n', rows=30)
    write(project, "demo_pkg/__init__.py", "")
    write(project, "demo_pkg/metrics.py", METRIC_MODULE)
    assert cli("build").exit_code == 0
    first = (project / MANIFEST_RELATIVE_PATH).read_bytes()
    (project / MANIFEST_RELATIVE_PATH).unlink()
    assert cli("build").exit_code == 0
    assert (project / MANIFEST_RELATIVE_PATH).read_bytes() == first


def test_custom_metrics_are_recorded_with_their_module_digest(
    project: Path, cli: CliRunner
) -> None:
    eval_project(project, 'metrics = ["json_valid", "demo_pkg.metrics:length_ratio"]\n')
    write(project, "demo_pkg/__init__.py", "")
    module = write(project, "demo_pkg/metrics.py", METRIC_MODULE)
    assert cli("build").exit_code == 0
    manifest = manifest_of(project)
    assert manifest["eval"]["metrics"] == [
        {
            "target": "demo_pkg.metrics:length_ratio",
            "module": "demo_pkg.metrics",
            "attribute": "length_ratio",
            "file": "demo_pkg/metrics.py",
            "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
        }
    ]
    assert manifest["job"]["config"]["eval"]["metrics"] == [
        "json_valid",
        "demo_pkg.metrics:length_ratio",
    ]
    module.write_text(METRIC_MODULE + "\n# edited\n", encoding="utf-8")
    staleness = check_staleness(read_manifest(project / MANIFEST_RELATIVE_PATH), project)
    assert staleness.changed == ["demo_pkg/metrics.py"]


def test_an_eval_file_is_digested_and_its_rows_listed(project: Path, cli: CliRunner) -> None:
    eval_project(project, 'path = "data/eval.jsonl"\n', top="dataset_split = 0.1\n")
    eval_file = write_jsonl(project, "data/eval.jsonl", chat_rows(30)[25:])
    result = cli("build")
    assert result.exit_code == 0, result.stderr
    manifest = manifest_of(project)
    digest = hashlib.sha256(eval_file.read_bytes()).hexdigest()
    hashes = [row_sha256(row) for row in chat_rows(30)[25:]]
    assert manifest["eval"]["file"] == {
        "type": "file",
        "path": "data/eval.jsonl",
        "sha256": digest,
        "size": eval_file.stat().st_size,
        "rows": 5,
        "fileFormat": "jsonl",
    }
    assert manifest["eval"]["heldOut"]["source"] == "eval file"
    assert manifest["eval"]["heldOut"]["rowSha256"] == hashes
    spec = manifest["job"]["config"]["eval"]
    assert spec["source"] == {"type": "file", "path": "data/eval.jsonl", "sha256": digest}
    assert spec["heldOutSha256"] == rows_digest(hashes)
    assert "heldOut" not in spec  # nothing of the training data is held out for it
    assert "on the 5 rows of data/eval.jsonl" in result.stdout
    write_jsonl(project, "data/eval.jsonl", chat_rows(31)[25:])
    staleness = check_staleness(read_manifest(project / MANIFEST_RELATIVE_PATH), project)
    assert staleness.changed == ["data/eval.jsonl"]


def test_a_changed_eval_file_is_a_pin_that_moves(project: Path) -> None:
    eval_project(project, 'path = "data/eval.jsonl"\n')
    write_jsonl(project, "data/eval.jsonl", chat_rows(3))
    build_project()
    write_jsonl(project, "data/eval.jsonl", chat_rows(4))
    moves = build_project().moves
    labels = [move.path for move in moves]
    assert labels == ["eval data", "eval held-out rows"]


def test_a_manifest_of_format_2_still_reads(project: Path, cli: CliRunner) -> None:
    """Format 3 only added ``eval``: a format-2 manifest (no eval) is read as it is."""
    eval_project(project, "rows = 8\n")
    write(project, "arkor.toml", MINIMAL_TOML)
    assert cli("build").exit_code == 0
    path = project / MANIFEST_RELATIVE_PATH
    data = json.loads(path.read_text(encoding="utf-8"))
    data["manifestVersion"] = 2
    data.pop("digest")
    data["digest"] = compute_digest(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_manifest(path).manifest_version == 2
