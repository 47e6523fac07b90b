"""``on_eval`` and custom metrics through ``arkor start``: the tiny model trained and evaluated for real."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from arkor.cli.main import run
from arkor.cloud import EvalCompleted, EvalSample
from arkor.manifest import MANIFEST_RELATIVE_PATH, read_manifest
from arkor.sdk import MetricError, load_custom_metrics
from arkor.sdk._dispatch import score_custom_metrics
from tests.sdk.conftest import RECORDING_CALLBACKS, build_args, recorded
from tests.utils.cli import CliRunner
from tests.utils.ports import unused_arkor_port
from tests.utils.projects import write

__all__ = ["unused_arkor_port"]

pytestmark = pytest.mark.usefixtures("unused_arkor_port")

METRICS = '''\
"""Custom metrics: one number, and a dict of them."""


def overlap(prediction, reference, row):
    words = set(prediction.split())
    return len(words & set(reference.split())) / max(len(words), 1)


def shape(prediction, reference, row):
    assert "messages" in row, "a metric gets the row as the data holds it"
    return {"nonempty": float(bool(prediction.strip())), "short": float(len(prediction) <= 200)}


def broken(prediction, reference, row):
    raise RuntimeError("this metric has a bug")
'''

ON_EVAL = """

def on_eval(ctx):
    record(
        "eval",
        step=ctx.step,
        final=ctx.final,
        checkpoint=ctx.checkpoint,
        rows=ctx.rows,
        error=ctx.error,
        metrics=[score.model_dump() for score in ctx.metrics],
        samples=[
            {"sha256": s.sha256, "reference": s.reference, "base": s.base, "adapter": s.adapter}
            for s in ctx.samples
        ],
        adapter_overlap=getattr(ctx.metric("demo.metrics:overlap"), "adapter", None),
    )
"""

EVAL_SETTINGS = (
    'trainer.eval.metrics=["exact_match", "rouge_l", "demo.metrics:overlap", "demo.metrics:shape"]',
    "trainer.eval.max_new_tokens=8",
    "trainer.eval.rows=6",
)


@pytest.fixture
def trained_project(project: Path, tiny_model: Path) -> Path:
    """`arkor init` (blank template, whose config names on_eval) with recording callbacks, built."""
    assert run(["init", "--yes", "--template", "blank", "--name", "demo"]) == 0
    write(project, "demo/callbacks.py", RECORDING_CALLBACKS + ON_EVAL)
    assert 'on_eval = "demo.callbacks:on_eval"' in (project / "arkor.toml").read_text("utf-8")
    assert run(build_args(tiny_model)) == 0
    return project


def with_metrics(project: Path) -> None:
    write(project, "demo/metrics.py", METRICS)


def overlap(prediction: str, reference: str) -> float:
    words = set(prediction.split())
    return len(words & set(reference.split())) / max(len(words), 1)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_on_eval_gets_base_adapter_and_custom_metrics(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    with_metrics(trained_project)
    assert run(build_args(tiny_model, *EVAL_SETTINGS)) == 0
    result = cli("start")
    assert result.exit_code == 0, result.stderr + result.stdout
    seen = recorded(trained_project)
    kinds = [entry["kind"] for entry in seen]
    assert kinds[-2:] == ["eval", "completed"], "the eval comes before training.completed"
    (evaluation,) = [entry for entry in seen if entry["kind"] == "eval"]
    assert evaluation["final"] is True and evaluation["checkpoint"] is None
    assert evaluation["step"] == 6 and evaluation["error"] is None
    assert evaluation["rows"] == len(evaluation["samples"]) == 6
    names = [metric["name"] for metric in evaluation["metrics"]]
    assert names == [
        "exact_match",
        "rouge_l",
        "demo.metrics:overlap",
        "demo.metrics:shape.nonempty",
        "demo.metrics:shape.short",
    ]
    for metric in evaluation["metrics"]:
        assert metric["base"] is not None and metric["adapter"] is not None, metric
        assert metric["count"] == 6
    samples = evaluation["samples"]
    scored = {metric["name"]: metric for metric in evaluation["metrics"]}
    for side in ("base", "adapter"):
        expected = mean([overlap(s[side], s["reference"]) for s in samples])
        assert scored["demo.metrics:overlap"][side] == pytest.approx(expected)
        nonempty = mean([float(bool(s[side].strip())) for s in samples])
        assert scored["demo.metrics:shape.nonempty"][side] == pytest.approx(nonempty)
    assert evaluation["adapter_overlap"] == scored["demo.metrics:overlap"]["adapter"]

    manifest = read_manifest(trained_project / MANIFEST_RELATIVE_PATH)
    assert manifest.eval is not None and manifest.eval.held_out is not None
    held = set(manifest.eval.held_out.row_sha256)
    assert {sample["sha256"] for sample in samples} <= held, "evaluated rows are the held-out ones"

    assert "evaluating the adapter against its base on 6 held-out rows" in result.stdout
    table = result.stdout[
        result.stdout.index("Eval of the adapter at step 6 on 6 held-out rows:") :
    ]
    lines = table.splitlines()
    assert lines[1].split() == ["metric", "base", "adapter", "change"]
    assert [line.split()[0] for line in lines[2:7]] == names


def test_json_lines_carry_the_custom_metrics(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    with_metrics(trained_project)
    assert run(build_args(tiny_model, *EVAL_SETTINGS)) == 0
    result = cli("start", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (event,) = [line for line in lines if line.get("type") == "eval.completed"]
    names = [metric["name"] for metric in event["metrics"]]
    assert "demo.metrics:overlap" in names and "demo.metrics:shape.short" in names
    assert "Eval of the adapter" not in result.stdout


def test_a_custom_metric_that_raises_fails_the_run_naming_it(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    with_metrics(trained_project)
    settings = (
        'trainer.eval.metrics=["exact_match", "demo.metrics:broken"]',
        "trainer.eval.max_new_tokens=4",
        "trainer.eval.rows=2",
    )
    assert run(build_args(tiny_model, *settings)) == 0
    result = cli("start")
    assert result.exit_code == 1
    assert "The custom metric `demo.metrics:broken` raised RuntimeError: this metric has a bug" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def event_with(samples: list[EvalSample]) -> EvalCompleted:
    return EvalCompleted(job_id="job_1", rows=len(samples), final=True, samples=samples)


SAMPLES = [
    EvalSample(
        number=1,
        sha256="a",
        prompt=[],
        reference="4",
        base="four",
        adapter="4",
        row={"messages": []},
    ),
    EvalSample(
        number=2, sha256="b", prompt=[], reference="6", base="", adapter="6 ", row={"messages": []}
    ),
]


def test_load_custom_metrics_gives_each_recorded_metric_by_target(
    trained_project: Path, tiny_model: Path
) -> None:
    with_metrics(trained_project)
    assert run(build_args(tiny_model, *EVAL_SETTINGS)) == 0
    manifest = read_manifest(trained_project / MANIFEST_RELATIVE_PATH)
    metrics = load_custom_metrics(manifest, trained_project)
    assert list(metrics) == ["demo.metrics:overlap", "demo.metrics:shape"]
    scored = score_custom_metrics(event_with(SAMPLES), metrics)
    assert isinstance(scored, EvalCompleted)
    by_name: dict[str, Any] = {score.name: score for score in scored.metrics}
    assert by_name["demo.metrics:shape.nonempty"].base == 0.5
    assert by_name["demo.metrics:shape.nonempty"].adapter == 1.0
    assert by_name["demo.metrics:overlap"].adapter == 1.0


def test_a_metric_that_returns_no_number_is_named() -> None:
    def halves(prediction: str, reference: str, row: dict[str, Any]) -> Any:
        return "half"

    with pytest.raises(MetricError, match=r"`my.metrics:halves` raised ValueError"):
        score_custom_metrics(event_with(SAMPLES), {"my.metrics:halves": halves})


def test_an_eval_file_is_uploaded_and_its_rows_evaluated(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    """``trainer.eval.path``: start uploads the file; the worker asks its rows, nothing else."""
    config = trained_project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("held_out = 0.1\n", ""), encoding="utf-8"
    )
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Spell {word} backwards."},
                {"role": "assistant", "content": word[::-1]},
            ]
        }
        for word in ("lamp", "river", "stone")
    ]
    write(trained_project, "data/eval.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    settings = ("trainer.eval.path=data/eval.jsonl", "trainer.eval.max_new_tokens=4")
    assert run(build_args(tiny_model, *settings)) == 0
    manifest = read_manifest(trained_project / MANIFEST_RELATIVE_PATH)
    assert manifest.eval is not None and manifest.eval.held_out is not None
    result = cli("start", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (event,) = [line for line in lines if line.get("type") == "eval.completed"]
    assert event.get("error") is None
    assert event["rows"] == event["heldOutRows"] == 3
    assert event["heldOutSha256"] == manifest.eval.held_out.rows_digest
    assert [sample["sha256"] for sample in event["samples"]] == manifest.eval.held_out.row_sha256
    assert [sample["reference"] for sample in event["samples"]] == ["pmal", "revir", "enots"]


def test_create_trainer_takes_an_eval_block(project: Path) -> None:
    """The SDK's trainer: the eval file checked and digested, custom metrics loaded from cwd."""
    from arkor.sdk import create_trainer

    write(project, "demo/__init__.py", "")
    write(project, "demo/metrics.py", METRICS)
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]}
    write(project, "data/train.jsonl", json.dumps(row) + "\n")
    eval_file = write(project, "data/eval.jsonl", json.dumps(row) + "\n")
    trainer = create_trainer(
        name="demo",
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        dataset={"type": "file", "path": "data/train.jsonl"},
        eval={"path": "data/eval.jsonl", "metrics": ["json_valid", "demo.metrics:overlap"]},
        cwd=project,
    )
    spec = trainer.config.eval
    assert spec is not None and spec.source is not None
    assert spec.source.sha256 == hashlib.sha256(eval_file.read_bytes()).hexdigest()
    assert spec.held_out is None and spec.metrics == ["json_valid", "demo.metrics:overlap"]
    assert trainer.eval_file == eval_file.resolve()
    assert list(trainer.custom_metrics) == ["demo.metrics:overlap"]
    assert trainer.custom_metrics["demo.metrics:overlap"]("a b", "a", {}) == 0.5
