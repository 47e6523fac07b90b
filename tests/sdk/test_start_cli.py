"""`arkor init` → `arkor build` → `arkor start`, for real: an embedded plane, a worker, the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arkor._home import arkor_home
from arkor.cli.main import run
from arkor.manifest import read_manifest
from tests.sdk.conftest import build_args, recorded
from tests.sdk.test_trainer import assert_checkpoint_answers
from tests.utils.cli import CliRunner
from tests.utils.plane import running_plane
from tests.utils.ports import unused_arkor_port
from tests.utils.process import OutputLines

__all__ = ["unused_arkor_port"]

pytestmark = pytest.mark.usefixtures("unused_arkor_port")


def test_start_trains_and_calls_the_callbacks_in_order(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    assert run(build_args(tiny_model, "trainer.learning_rate=5e-3")) == 0
    result = cli("start")
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "embedded local plane" in result.stdout
    seen = recorded(trained_project)
    kinds = [entry["kind"] for entry in seen]
    assert kinds == [
        "started",
        "log",
        "checkpoint",
        "log",
        "log",
        "checkpoint",
        "eval",
        "completed",
    ]
    assert [entry["step"] for entry in seen if entry["kind"] == "log"] == [2, 4, 6]
    checkpoints = [entry for entry in seen if entry["kind"] == "checkpoint"]
    assert [entry["step"] for entry in checkpoints] == [3, 6]
    assert all(entry["status"] == 200 for entry in checkpoints)
    assert_checkpoint_answers(
        tiny_model,
        arkor_home() / "local" / "artifacts" / seen[0]["job"] / "checkpoints",
        {entry["step"]: entry["answer"] for entry in checkpoints},
    )
    assert seen[-1]["metrics"]["step"] == 6
    adapter_line = next(
        line for line in result.stdout.splitlines() if line.strip().startswith("adapter")
    )
    adapter = Path(adapter_line.split(maxsplit=1)[1])
    assert (adapter / "adapter_model.safetensors").is_file()
    assert "completed" in result.stdout


def test_the_job_stays_visible_to_later_commands(trained_project: Path, cli: CliRunner) -> None:
    assert cli("start").exit_code == 0
    listed = cli("jobs", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    (job,) = json.loads(listed.stdout)["jobs"]
    assert job["status"] == "completed"
    logs = cli("jobs", "logs", job["id"], "--json")
    types = [json.loads(line)["type"] for line in logs.stdout.splitlines()]
    assert types[0] == "training.started" and types[-1] == "training.completed"
    shown = cli("jobs", "show", job["id"])
    assert "completed" in shown.stdout
    assert cli("jobs", "cancel", job["id"]).exit_code == 1, "a finished job cannot be cancelled"


def test_json_output_is_one_event_per_line_then_a_summary(
    trained_project: Path, cli: CliRunner
) -> None:
    result = cli("start", "--json")
    assert result.exit_code == 0, result.stderr
    *events, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "training.started"
    assert events[-1]["type"] == "training.completed"
    assert summary["status"] == "completed"
    assert Path(summary["adapter"]).is_dir()


def test_a_running_plane_named_by_the_environment_is_used(
    trained_project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "plane-home") as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        result = cli("start")
    assert result.exit_code == 0, result.stderr
    assert f"control plane at {plane.url}" in result.stdout


def test_a_stale_manifest_is_refused_until_rebuilt(trained_project: Path, cli: CliRunner) -> None:
    config = trained_project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("seed = 42", "seed = 43"), encoding="utf-8"
    )
    refused = cli("start")
    assert refused.exit_code == 2
    assert "arkor.toml changed" in refused.stderr and "arkor build" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_tampered_manifest_is_refused(trained_project: Path, cli: CliRunner) -> None:
    path = trained_project / ".arkor" / "build" / "manifest.json"
    path.write_text(
        path.read_text(encoding="utf-8").replace('"maxSteps": 6', '"maxSteps": 7'), encoding="utf-8"
    )
    refused = cli("start")
    assert refused.exit_code == 2
    assert "does not match its digest" in refused.stderr


def test_start_builds_a_missing_manifest_first(
    project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    assert run(["init", "--yes", "--template", "blank", "--name", "demo"]) == 0
    config = project / "arkor.toml"
    text = config.read_text(encoding="utf-8").replace(
        'model = "HuggingFaceTB/SmolLM2-135M-Instruct"', f'model = "{tiny_model}"'
    )
    config.write_text(
        text.replace("max_steps = 30", "max_steps = 2\ndry_run = true"), encoding="utf-8"
    )
    (project / "demo" / "callbacks.py").write_text("def on_log(ctx):\n    pass\n", encoding="utf-8")
    config.write_text(
        config.read_text(encoding="utf-8").split("[trainer.callbacks]")[0]
        + '[trainer.callbacks]\non_log = "demo.callbacks:on_log"\n',
        encoding="utf-8",
    )
    result = cli("start")
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "building it first" in result.stdout
    assert read_manifest(project / ".arkor" / "build" / "manifest.json").job.config.max_steps == 2


def test_a_raising_callback_fails_the_command_without_a_traceback(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    callbacks = trained_project / "demo" / "callbacks.py"
    callbacks.write_text(
        callbacks.read_text(encoding="utf-8")
        + "\n\ndef on_log(ctx):\n    raise RuntimeError('disk full')\n",
        encoding="utf-8",
    )
    assert cli(*build_args(tiny_model)).exit_code == 0
    result = cli("start")
    assert result.exit_code == 1
    assert "The `on_log` callback raised RuntimeError: disk full" in result.stderr
    assert "Traceback" not in result.stderr
    assert [entry["kind"] for entry in recorded(trained_project)] == ["started"]


def test_detach_needs_a_plane_that_outlives_the_command(
    trained_project: Path, cli: CliRunner
) -> None:
    result = cli("start", "--detach")
    assert result.exit_code == 2
    assert "arkor serve" in result.stderr


def test_detach_returns_at_once_on_a_running_plane(
    trained_project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "plane-home") as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        result = cli("start", "--detach")
        assert result.exit_code == 0, result.stderr
        job_id = next(word for word in result.stdout.split() if word.startswith("job_"))
        followed = cli("jobs", "logs", job_id, "--follow", "--json")
    assert json.loads(followed.stdout.splitlines()[-1])["type"] == "training.completed"


@pytest.mark.slow
def test_ctrl_c_on_the_embedded_plane_cancels_the_job(
    trained_project: Path, tiny_model: Path
) -> None:
    long_run = ("trainer.max_steps=100000", "trainer.logging_steps=1", "trainer.save_steps=100000")
    assert run(build_args(tiny_model, *long_run)) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "arkor", "start"],
        cwd=trained_project,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    output, errors = OutputLines(process.stdout), OutputLines(process.stderr)
    try:
        output.wait_for(lambda line: line.startswith("step "), timeout=120)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    stderr = errors.rest(timeout=30)
    assert process.returncode == 130, stderr
    assert "cancelled job" in stderr
    assert "Traceback" not in stderr


def test_the_template_callbacks_add_to_the_cli_output_rather_than_repeat_it(
    project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    assert run(["init", "--yes", "--template", "blank", "--name", "demo"]) == 0
    assert run(build_args(tiny_model)) == 0

    result = cli("start")

    assert result.exit_code == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    for step in (2, 4, 6):
        assert len([line for line in lines if line.startswith(f"step {step} ")]) == 1, lines
        assert not any(line.startswith(f"step {step}:") for line in lines)
    assert [line.split(" answers:")[0] for line in lines if " answers: " in line] == [
        "checkpoint 3",
        "checkpoint 6",
    ]
    (metrics,) = (project / ".arkor" / "metrics").glob("job_*.jsonl")
    lines_written = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    rows = [row for row in lines_written if "loss" in row]
    assert [row["step"] for row in rows] == [2, 4, 6]
    (evaluated,) = [row for row in lines_written if "eval_rows" in row]
    assert evaluated["step"] == 6 and "rouge_l" in evaluated
    assert sum(line.startswith("Eval of the adapter at step 6") for line in lines) == 1
    best = min(rows, key=lambda row: row["loss"])
    assert f"best loss {best['loss']:.4f} at step {best['step']}; metrics in {metrics}" in lines, (
        result.stdout[-600:]
    )
