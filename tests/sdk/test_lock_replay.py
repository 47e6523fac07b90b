"""`arkor build` pins a Hub model's commit; `arkor start` trains that commit after the branch
moves, `arkor jobs show` says what it trained with, and `--upgrade-model` moves on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from arkor.pins import installed_stack
from tests.sdk.conftest import FAST_RUN, recorded
from tests.utils.cli import CliRunner
from tests.utils.hub import HubCache
from tests.utils.ports import unused_arkor_port
from tests.utils.projects import minimal_project
from tests.utils.tiny_model import build_tiny_model

__all__ = ["unused_arkor_port"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("unused_arkor_port")]

HUB_ID = "owner/tiny-chat"
CONFIG = f"""\
[trainer]
name = "pinned"
model = "{HUB_ID}"
max_steps = 2
batch_size = 2
save_steps = 2
logging_steps = 1

[trainer.lora]
max_length = 64

[trainer.dataset]
type = "file"
path = "data/train.jsonl"
"""


def start(cli: CliRunner) -> dict[str, Any]:
    """`arkor start --json`; the training.started event's metadata."""
    result = cli("start", "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    started = next(event for event in events if event.get("type") == "training.started")
    return {"job": started["jobId"], **started["metadata"]}


def test_replay_trains_the_pinned_commit_and_upgrade_moves_it(
    project: Path, cli: CliRunner, tiny_model: Path, tmp_path: Path, hub_cache: HubCache
) -> None:
    cache = hub_cache
    first = cache.add_commit("model", HUB_ID, tiny_model)
    minimal_project(project, CONFIG, rows=8)
    assert cli("build").exit_code == 0
    second = cache.add_commit("model", HUB_ID, build_tiny_model(tmp_path / "b", layers=1))

    pinned = start(cli)
    assert pinned["modelPin"]["revision"] == first, "trained the pinned commit, not main"

    shown = cli("jobs", "show", pinned["job"])
    assert shown.exit_code == 0, shown.stderr
    assert f"model    Hub commit {first}" in shown.stdout
    stack = installed_stack()
    assert stack is not None
    assert re.search(rf"stack +torch {re.escape(stack['torch'])}, transformers", shown.stdout)
    as_json = json.loads(cli("jobs", "show", pinned["job"], "--json").stdout)
    assert as_json["trainedWith"]["stack"] == stack
    assert as_json["trainedWith"]["modelPin"]["revision"] == first

    moved = cli("build", "--upgrade-model")
    assert f"model {HUB_ID}: {first[:12]} → {second[:12]}" in moved.stdout
    upgraded = start(cli)
    assert upgraded["modelPin"]["revision"] == second
    assert upgraded["trainableParameters"] * 2 == pinned["trainableParameters"]


def test_a_store_entry_changed_after_the_build_is_refused(
    project: Path, cli: CliRunner, tiny_model: Path, tmp_path: Path
) -> None:
    from arkor.engine import ModelStore

    stored = ModelStore().import_model(tiny_model, HUB_ID)
    minimal_project(project, CONFIG, rows=8)
    assert cli("build").exit_code == 0
    other = build_tiny_model(tmp_path / "other", seed=5)
    (stored.path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())

    result = cli("start")
    assert result.exit_code == 1
    output = result.stdout + result.stderr
    assert f"The model `{HUB_ID}` (a model store entry at {stored.path}) is not the one" in output
    assert "model.safetensors changed since `arkor build`" in output
    assert "run `arkor build` to re-lock the manifest" in output


def test_chat_with_a_checkpoint_loads_the_base_at_the_pinned_commit(
    trained_project: Path, cli: CliRunner, tiny_model: Path, hub_cache: HubCache
) -> None:
    """The branch names a commit that is not in the cache: only the pinned one can answer."""
    cache = hub_cache
    cache.add_commit("model", HUB_ID, tiny_model)
    args = ["build", "--set", f"trainer.model={HUB_ID}"]
    for override in FAST_RUN:
        args += ["--set", override]
    assert cli(*args).exit_code == 0
    cache.move_branch("model", HUB_ID, "f" * 40)

    result = cli("start")
    assert result.exit_code == 0, result.stderr + result.stdout
    checkpoints = [entry for entry in recorded(trained_project) if entry["kind"] == "checkpoint"]
    assert [entry["status"] for entry in checkpoints] == [200, 200]


def built_on_another_stack(cli: CliRunner, tiny_model: Path, *overrides: str) -> dict[str, str]:
    """Build as if transformers were 4.0.0 here; return the real stack the worker will have."""
    import arkor.pins

    stack = installed_stack()
    assert stack is not None
    args = ["build", "--set", f"trainer.model={tiny_model}"]
    for override in (*FAST_RUN, *overrides):
        args += ["--set", override]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arkor.pins, "installed_stack", lambda: {**stack, "transformers": "4.0.0"})
        assert cli(*args).exit_code == 0
    return stack


def test_a_stack_mismatch_is_a_warning_in_the_output(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    stack = built_on_another_stack(cli, tiny_model)
    result = cli("start")
    assert result.exit_code == 0, result.stderr + result.stdout
    warning = f"warning: The training stack differs from the build's (transformers 4.0.0 at build, {stack['transformers']} here)"
    assert warning in result.stdout


def test_a_stack_mismatch_fails_the_run_when_strict(
    trained_project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    built_on_another_stack(cli, tiny_model, "trainer.strict_stack=true")
    result = cli("start")
    assert result.exit_code == 1
    assert "Refusing to train: this worker's training stack differs" in result.stdout
    assert [entry["kind"] for entry in recorded(trained_project)] == ["failed"]
