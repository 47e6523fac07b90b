"""The worker trains exactly what the manifest pinned, or refuses with what changed.

Real training of the tiny model: a Hub model loads at its pinned commit from a Hub cache
laid out as the Hub client lays it out, while its branch has moved on; local weights,
files and URLs that changed since the build are refused; a stack that differs from the
build's is a warning, or a refusal with ``strict_stack``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud import ModelPin
from arkor.engine import ListSink, TrainingRun, train
from arkor.pins import DigestCache, installed_stack, pin_model
from tests.engine.conftest import BlobServer
from tests.engine.test_train import job_config, run_job, toy_rows
from tests.utils.hub import HubCache
from tests.utils.tiny_model import build_tiny_model

HUB_ID = "owner/tiny-chat"


def sub(tmp_path: Path, name: str) -> Path:
    """A fresh folder for one of a test's runs."""
    folder = tmp_path / name
    folder.mkdir()
    return folder


def started(sink: ListSink) -> dict[str, Any]:
    event = sink.events[0]
    assert event.type == "training.started", sink.types()
    return event.metadata or {}


def failure(sink: ListSink) -> str:
    assert sink.types()[-1] == "training.failed", sink.types()
    return str(sink.events[-1].error)


@pytest.fixture
def two_commits(tiny_model: Path, tmp_path: Path, hub_cache: HubCache) -> tuple[str, str]:
    """``HUB_ID`` in the Hub cache: a 2-layer commit, then a 1-layer one that ``main`` names."""
    first = hub_cache.add_commit("model", HUB_ID, tiny_model)
    second = hub_cache.add_commit("model", HUB_ID, build_tiny_model(tmp_path / "b", layers=1))
    return first, second


def test_a_hub_model_trains_at_the_pinned_commit_after_its_branch_moved(
    tiny_model: Path, tmp_path: Path, two_commits: tuple[str, str]
) -> None:
    first, second = two_commits
    pinned = ModelPin(kind="hub", revision=first)
    outcome, sink, _ = run_job(
        tiny_model, sub(tmp_path, "pinned"), model=HUB_ID, model_pin=pinned.to_wire(), max_steps=2
    )
    assert outcome.status == "completed", outcome.error
    on_pin = started(sink)
    assert on_pin["modelPin"]["revision"] == first

    outcome, sink, _ = run_job(tiny_model, sub(tmp_path, "unpinned"), model=HUB_ID, max_steps=2)
    assert outcome.status == "completed", outcome.error
    on_branch = started(sink)
    assert on_branch["modelPin"]["revision"] == second, "an unpinned model is pinned by the run"
    assert on_branch["trainableParameters"] * 2 == on_pin["trainableParameters"], (
        "the pinned run trained the 2-layer commit, not the 1-layer one main names now"
    )


def test_a_pinned_commit_missing_offline_is_refused_with_the_fix(
    tiny_model: Path, tmp_path: Path, two_commits: tuple[str, str]
) -> None:
    pinned = ModelPin(kind="hub", revision="f" * 40)
    outcome, sink, _ = run_job(
        tiny_model, tmp_path, model=HUB_ID, model_pin=pinned.to_wire(), max_steps=2
    )
    assert outcome.status == "failed"
    error = failure(sink)
    assert "at the commit the manifest pinned (ffffffffffff)" in error
    assert "arkor build --upgrade-model" in error


def test_local_weights_that_changed_since_the_build_are_refused(
    tiny_model: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    pin, _ = pin_model(str(folder), DigestCache())
    outcome, sink, _ = run_job(
        tiny_model, sub(tmp_path, "same"), model=str(folder), model_pin=pin.to_wire(), max_steps=2
    )
    assert outcome.status == "completed", outcome.error
    assert started(sink)["modelPin"]["sha256"] == pin.sha256

    shutil.copy(build_tiny_model(tmp_path / "other", seed=7) / "model.safetensors", folder)
    outcome, sink, _ = run_job(
        tiny_model,
        sub(tmp_path, "changed"),
        model=str(folder),
        model_pin=pin.to_wire(),
        max_steps=2,
    )
    assert outcome.status == "failed"
    assert sink.types() == ["training.failed"], "refused before anything trained"
    error = failure(sink)
    assert f"The model `{folder}` (a model folder at {folder}) is not the one the manifest" in error
    assert "model.safetensors changed since `arkor build`" in error
    assert "Put the pinned weights back, or run `arkor build`" in error


def test_a_model_pinned_as_another_kind_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    pin, _ = pin_model(str(tiny_model), DigestCache())
    as_store = pin.model_copy(update={"kind": "store"})
    outcome, sink, _ = run_job(tiny_model, tmp_path, model_pin=as_store.to_wire(), max_steps=2)
    assert outcome.status == "failed"
    assert "was pinned by `arkor build` as a model store entry, but here it is a model folder" in (
        failure(sink)
    )


def test_the_run_reports_the_stack_and_data_it_trained_with(
    tiny_model: Path, tmp_path: Path
) -> None:
    outcome, sink, _ = run_job(tiny_model, tmp_path, max_steps=2)
    assert outcome.status == "completed", outcome.error
    metadata = started(sink)
    assert metadata["stack"] == installed_stack()
    data = (tmp_path / "train.jsonl").read_bytes()
    assert metadata["dataPin"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert metadata["modelPin"]["kind"] == "folder"
    assert "warnings" not in metadata


def test_a_different_stack_is_a_warning(tiny_model: Path, tmp_path: Path) -> None:
    stack = installed_stack()
    assert stack is not None
    built = {**stack, "transformers": "4.0.0"}
    outcome, sink, _ = run_job(tiny_model, tmp_path, build_stack=built, max_steps=2)
    assert outcome.status == "completed", outcome.error
    (warning,) = started(sink)["warnings"]
    assert f"transformers 4.0.0 at build, {stack['transformers']} here" in warning
    assert "strict_stack = true" in warning


def test_a_different_stack_is_refused_when_strict(tiny_model: Path, tmp_path: Path) -> None:
    stack = installed_stack()
    assert stack is not None
    built = {**stack, "peft": "0.1.0"}
    outcome, sink, _ = run_job(
        tiny_model, tmp_path, build_stack=built, strict_stack=True, max_steps=2
    )
    assert outcome.status == "failed"
    assert sink.types() == ["training.failed"]
    error = failure(sink)
    assert "Refusing to train" in error and "peft 0.1.0 at build" in error
    assert "pip install accelerate==" in error


def test_a_file_that_is_not_the_pinned_bytes_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    source = {"type": "file", "upload_id": "upload-1", "sha256": "0" * 64}
    outcome, sink, _ = run_job(tiny_model, tmp_path, dataset_source=source, max_steps=2)
    assert outcome.status == "failed"
    assert "is not the file the manifest pinned (sha256" in failure(sink)


def blob_run(tiny_model: Path, tmp_path: Path, source: dict[str, Any]) -> tuple[str, ListSink]:
    sink = ListSink()
    outcome = train(
        TrainingRun(
            job_id="j",
            config=job_config(tiny_model, dataset_source=source, max_steps=2),
            output_dir=tmp_path / "job",
            sink=sink,
        )
    )
    return outcome.status, sink


def test_a_url_whose_bytes_changed_is_refused(
    tiny_model: Path, tmp_path: Path, blob_server: BlobServer
) -> None:
    rows = "".join(json.dumps(row) + "\n" for row in toy_rows())
    url = blob_server.add("/train.jsonl", rows)
    pinned = hashlib.sha256(rows.encode()).hexdigest()
    status, sink = blob_run(
        tiny_model, tmp_path / "a", {"type": "blob", "url": url, "sha256": pinned}
    )
    assert status == "completed"
    assert started(sink)["dataPin"]["sha256"] == pinned

    blob_server.add("/train.jsonl", rows + rows)
    status, sink = blob_run(
        tiny_model, tmp_path / "b", {"type": "blob", "url": url, "sha256": pinned}
    )
    assert status == "failed"
    error = failure(sink)
    assert f"The data at {url} is not what the manifest pinned: its sha256 is" in error
    assert "arkor build --upgrade-data" in error


def test_a_url_pinned_by_etag_is_refused_when_the_etag_changed(
    tiny_model: Path, tmp_path: Path, blob_server: BlobServer
) -> None:
    url = blob_server.add("/train.jsonl", "".join(json.dumps(row) + "\n" for row in toy_rows()))
    source = {"type": "blob", "url": url, "etag": '"an-older-version"'}
    status, sink = blob_run(tiny_model, tmp_path, source)
    assert status == "failed"
    assert "the server's Etag is" in failure(sink)
