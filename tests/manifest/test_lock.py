"""`arkor build` as a lockfile's resolver: it pins the model, the data and the stack, keeps
pins while the config names the same things, moves them on --upgrade, and --locked
refuses any change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor.engine import ModelStore
from arkor.manifest import MANIFEST_RELATIVE_PATH, compute_digest
from tests.utils.blobs import BlobServer, serving_blobs
from tests.utils.cli import CliRunner
from tests.utils.hub import HubCache, LoopbackHub
from tests.utils.projects import CHAT_ROW, MINIMAL_TOML, minimal_project
from tests.utils.requires import need

HUB_ID = "owner/tiny-chat"
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def fake_model(folder: Path, weights: bytes = b"weights-a") -> Path:
    """A folder shaped like a transformers model (build hashes it; nothing loads it here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": TEMPLATE}), encoding="utf-8"
    )
    (folder / "README.md").write_text("# a model card", encoding="utf-8")
    return folder


def config_for(model: str, dataset: str | None = None) -> str:
    text = MINIMAL_TOML.replace('"HuggingFaceTB/SmolLM2-135M-Instruct"', json.dumps(model))
    if dataset is not None:
        text = text.replace('type = "file"\npath = "data/train.jsonl"\n', dataset)
    return text


def manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST_RELATIVE_PATH).read_text(encoding="utf-8"))
    return data


def build(cli: CliRunner, *args: str) -> str:
    result = cli("build", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture
def blobs() -> Iterator[BlobServer]:
    with serving_blobs() as server:
        yield server


# --- the model ---------------------------------------------------------------------------


def test_a_hub_model_is_pinned_to_the_commit_its_branch_names(
    project: Path, cli: CliRunner, hub_cache: HubCache, tmp_path: Path
) -> None:
    commit = hub_cache.add_commit("model", HUB_ID, fake_model(tmp_path / "a"))
    minimal_project(project, config_for(HUB_ID))
    out = build(cli)
    pin = manifest(project)["job"]["config"]["modelPin"]
    assert pin["kind"] == "hub"
    assert pin["revision"] == commit
    assert pin["chatTemplateSha256"] is not None
    assert manifest(project)["unresolved"] == [] or all(
        line.startswith("stack:") for line in manifest(project)["unresolved"]
    )
    assert f"{HUB_ID} @ {commit[:12]} (Hub commit)" in out


def test_a_rebuild_keeps_the_pin_and_upgrade_moves_it(
    project: Path, cli: CliRunner, hub_cache: HubCache, tmp_path: Path
) -> None:
    first = hub_cache.add_commit("model", HUB_ID, fake_model(tmp_path / "a"))
    minimal_project(project, config_for(HUB_ID))
    build(cli)
    second = hub_cache.add_commit("model", HUB_ID, fake_model(tmp_path / "b", b"weights-b"))

    out = build(cli)
    assert manifest(project)["job"]["config"]["modelPin"]["revision"] == first
    assert "Up to date" in out and "moved" not in out

    out = build(cli, "--upgrade-model")
    assert manifest(project)["job"]["config"]["modelPin"]["revision"] == second
    assert f"moved     model {HUB_ID}: {first[:12]} → {second[:12]}" in out

    out = build(cli, "--upgrade")
    assert "Nothing moved: every pin is already the newest." in out


def test_the_hub_is_asked_when_online(
    project: Path, cli: CliRunner, hub: LoopbackHub, hub_cache: HubCache, tmp_path: Path
) -> None:
    hub_cache.add_commit("model", HUB_ID, fake_model(tmp_path / "a"))
    newer = "c" * 40
    hub.branches[("model", HUB_ID)] = newer
    minimal_project(project, config_for(HUB_ID))
    build(cli)
    assert manifest(project)["job"]["config"]["modelPin"]["revision"] == newer


def test_a_model_the_hub_does_not_have_fails_the_build_at_its_key(
    project: Path, cli: CliRunner, hub: LoopbackHub
) -> None:
    minimal_project(project, config_for("owner/no-such-model"))
    result = cli("build")
    assert result.exit_code == 2
    assert "arkor.toml:3:9" in result.stderr
    assert "the Hub has no model `owner/no-such-model` (HTTP 404)" in result.stderr
    assert not (project / MANIFEST_RELATIVE_PATH).exists()


def test_an_unresolved_model_is_one_line_and_does_not_fail_the_build(
    project: Path, cli: CliRunner
) -> None:
    minimal_project(project, config_for(HUB_ID))
    out = build(cli)
    data = manifest(project)
    assert "modelPin" not in data["job"]["config"]
    assert data["unresolved"][0] == (
        "model: HF_HUB_OFFLINE is set, and the local Hub cache has no copy"
    )
    notes = [line for line in out.splitlines() if line.startswith("! Not pinned")]
    assert len(notes) == 1
    assert "HF_HUB_OFFLINE is set" in notes[0]
    as_json = json.loads(cli("build", "--json").stdout)
    assert as_json["unresolved"] == data["unresolved"]
    assert as_json["moved"] == []


def test_a_model_folder_is_pinned_by_the_digests_of_its_files(
    project: Path, cli: CliRunner, tmp_path: Path
) -> None:
    folder = fake_model(tmp_path / "model")
    minimal_project(project, config_for(str(folder)))
    build(cli)
    pin = manifest(project)["job"]["config"]["modelPin"]
    assert pin["kind"] == "folder"
    assert set(pin["files"]) == {"config.json", "model.safetensors", "tokenizer_config.json"}
    old = pin["sha256"]

    (folder / "README.md").write_text("# edited card", encoding="utf-8")
    assert "moved" not in build(cli), "a model card does not decide what trains"

    (folder / "model.safetensors").write_bytes(b"weights-b")
    out = build(cli)
    new = manifest(project)["job"]["config"]["modelPin"]["sha256"]
    assert new != old
    assert f"moved     model {folder}: {old[:12]} → {new[:12]}" in out


def test_a_store_entry_is_pinned_like_a_folder(
    project: Path, cli: CliRunner, tmp_path: Path
) -> None:
    ModelStore().import_model(fake_model(tmp_path / "model"), "acme/tiny")
    minimal_project(project, config_for("acme/tiny"))
    build(cli)
    pin = manifest(project)["job"]["config"]["modelPin"]
    assert pin["kind"] == "store"
    assert pin["files"]["model.safetensors"] is not None


def test_a_gguf_file_is_pinned_by_its_sha256(project: Path, cli: CliRunner, tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    minimal_project(project, config_for(str(gguf)))
    build(cli)
    pin = manifest(project)["job"]["config"]["modelPin"]
    assert pin["kind"] == "gguf"
    assert pin["files"] == {"tiny.gguf": pin["sha256"]}


# --- the data ----------------------------------------------------------------------------


def test_a_url_is_pinned_by_the_sha256_of_its_bytes_and_kept(
    project: Path, cli: CliRunner, blobs: BlobServer
) -> None:
    rows = json.dumps(CHAT_ROW) + "\n"
    url = blobs.add("/train.jsonl", rows)
    minimal_project(project, config_for(HUB_ID, f'type = "blob"\nurl = "{url}"\n'))
    build(cli)
    source = manifest(project)["job"]["config"]["datasetSource"]
    import hashlib

    assert source["sha256"] == hashlib.sha256(rows.encode()).hexdigest()
    assert "etag" not in source

    blobs.add("/train.jsonl", rows * 2)
    build(cli)
    assert manifest(project)["job"]["config"]["datasetSource"]["sha256"] == source["sha256"]
    out = build(cli, "--upgrade-data")
    moved = manifest(project)["job"]["config"]["datasetSource"]["sha256"]
    assert moved == hashlib.sha256((rows * 2).encode()).hexdigest()
    assert f"moved     data: {source['sha256'][:12]} → {moved[:12]}" in out


def test_a_url_too_large_to_hash_is_pinned_by_its_etag(
    project: Path, cli: CliRunner, blobs: BlobServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arkor.pins._blob.BLOB_HASH_LIMIT", 16)
    url = blobs.add("/train.jsonl", json.dumps(CHAT_ROW) + "\n")
    minimal_project(project, config_for(HUB_ID, f'type = "blob"\nurl = "{url}"\n'))
    out = build(cli)
    source = manifest(project)["job"]["config"]["datasetSource"]
    assert "sha256" not in source
    assert source["etag"].startswith('"')
    assert f"ETag {source['etag']}" in out


def test_an_unreachable_url_is_left_unpinned(project: Path, cli: CliRunner) -> None:
    from tests.utils.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/train.jsonl"
    minimal_project(project, config_for(HUB_ID, f'type = "blob"\nurl = "{url}"\n'))
    build(cli)
    unresolved = manifest(project)["unresolved"]
    assert any(line.startswith("data: the URL could not be read") for line in unresolved)


def test_a_hub_dataset_is_pinned_to_its_commit(
    project: Path, cli: CliRunner, hub_cache: HubCache, tmp_path: Path
) -> None:
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "train.jsonl").write_text(json.dumps(CHAT_ROW) + "\n", encoding="utf-8")
    commit = hub_cache.add_commit("dataset", "owner/rows", rows)
    minimal_project(project, config_for(HUB_ID, 'type = "huggingface"\nname = "owner/rows"\n'))
    out = build(cli)
    assert manifest(project)["job"]["config"]["datasetSource"]["revision"] == commit
    assert f"@ {commit[:12]} (Hub commit)" in out


# --- --locked and reproducibility ---------------------------------------------------------


def test_locked_passes_when_nothing_would_change_and_fails_on_a_change(
    project: Path, cli: CliRunner, tmp_path: Path
) -> None:
    need("torch", "a fully pinned manifest records the engine's stack")
    minimal_project(project, config_for(str(fake_model(tmp_path / "model"))))
    built = build(cli)
    assert "Built" in built
    before = (project / MANIFEST_RELATIVE_PATH).read_bytes()

    assert "Locked:" in build(cli, "--locked")

    result = cli("build", "--locked", "--set", "trainer.max_steps=20")
    assert result.exit_code == 2
    assert "would change (job.config.maxSteps: 10 → 20;" in result.stderr
    assert (project / MANIFEST_RELATIVE_PATH).read_bytes() == before, "--locked writes nothing"


def test_locked_treats_an_unresolved_pin_as_a_change(project: Path, cli: CliRunner) -> None:
    minimal_project(project, config_for(HUB_ID))
    build(cli)
    result = cli("build", "--locked")
    assert result.exit_code == 2
    assert "leaves pins unresolved (model: HF_HUB_OFFLINE is set" in result.stderr


def test_locked_without_a_manifest_writes_none(project: Path, cli: CliRunner) -> None:
    minimal_project(project)
    result = cli("build", "--locked")
    assert result.exit_code == 2
    assert "no manifest" in result.stderr
    assert not (project / MANIFEST_RELATIVE_PATH).exists()


def test_the_same_inputs_give_the_same_bytes(
    project: Path, cli: CliRunner, hub_cache: HubCache, tmp_path: Path
) -> None:
    hub_cache.add_commit("model", HUB_ID, fake_model(tmp_path / "a"))
    minimal_project(project, config_for(HUB_ID))
    first = (build(cli), (project / MANIFEST_RELATIVE_PATH).read_bytes())[1]
    (project / MANIFEST_RELATIVE_PATH).unlink()
    build(cli)
    assert (project / MANIFEST_RELATIVE_PATH).read_bytes() == first


def test_a_manifest_from_before_pins_is_refused_with_the_fix(project: Path, cli: CliRunner) -> None:
    minimal_project(project)
    build(cli)
    path = project / MANIFEST_RELATIVE_PATH
    data = json.loads(path.read_text(encoding="utf-8"))
    data["manifestVersion"] = 1
    data.pop("digest")
    data["digest"] = compute_digest(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    result = cli("start")
    assert result.exit_code == 2
    assert "format version 1, from an older Arkor" in result.stderr
    assert "Run `arkor build` to re-lock it." in result.stderr


def test_upgrade_names_only_the_pins_that_move(cli: CliRunner, project: Path) -> None:
    minimal_project(project)
    from arkor.errors import UsageError
    from arkor.manifest import build_project

    with pytest.raises(UsageError, match="the pins that move are model and data"):
        build_project(upgrade=["stack"])
