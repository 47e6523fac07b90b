"""Pins resolved the Hub's way: a branch to its commit (Hub first, cache offline), local files by digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import arkor.pins._digests as digests
from arkor.pins import (
    DigestCache,
    NotOnHub,
    Revision,
    Unresolved,
    chat_template_sha256,
    files_digest,
    model_files,
    resolve_revision,
    stack_differences,
)
from tests.utils.hub import HubCache, LoopbackHub
from tests.utils.ports import free_port

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def small_repo(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_offline_the_cache_refs_name_the_commit(hub_cache: HubCache, tmp_path: Path) -> None:
    commit = hub_cache.add_commit("model", "owner/tiny", small_repo(tmp_path / "repo"))
    assert resolve_revision("model", "owner/tiny") == Revision(commit, "cache")


def test_online_the_hub_answers_before_the_cache(
    hub_cache: HubCache, hub: LoopbackHub, tmp_path: Path
) -> None:
    hub_cache.add_commit("model", "owner/tiny", small_repo(tmp_path / "repo"))
    hub.branches[("model", "owner/tiny")] = COMMIT_B
    assert resolve_revision("model", "owner/tiny") == Revision(COMMIT_B, "hub")
    assert hub.requests == ["/api/models/owner/tiny/revision/main"]


def test_datasets_are_asked_for_under_their_own_route(hub: LoopbackHub) -> None:
    hub.branches[("dataset", "owner/rows")] = COMMIT_A
    assert resolve_revision("dataset", "owner/rows") == Revision(COMMIT_A, "hub")


def test_an_unreachable_hub_falls_back_to_the_cache(
    hub_cache: HubCache, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commit = hub_cache.add_commit("model", "owner/tiny", small_repo(tmp_path / "repo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    assert resolve_revision("model", "owner/tiny") == Revision(commit, "cache")


def test_neither_hub_nor_cache_says_why() -> None:
    with pytest.raises(
        Unresolved, match="HF_HUB_OFFLINE is set, and the local Hub cache has no copy"
    ):
        resolve_revision("model", "owner/missing")


def test_a_repository_the_hub_does_not_have_is_not_found(hub: LoopbackHub) -> None:
    with pytest.raises(NotOnHub, match="the Hub has no model `owner/typo`"):
        resolve_revision("model", "owner/typo")


def test_a_digest_is_computed_once_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"one")
    first = DigestCache().sha256(weights)
    cache = DigestCache()
    cache.sha256(weights)
    cache.save()
    reads: list[Path] = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda path: reads.append(path) or real(path))
    assert DigestCache().sha256(weights) == first
    assert reads == [], "an unchanged file is not read again"
    weights.write_bytes(b"two")
    assert DigestCache().sha256(weights) != first
    assert reads == [weights.resolve()], "a changed file is hashed again"


def test_a_same_size_edit_in_the_same_second_is_still_seen(tmp_path: Path) -> None:
    """The cache key includes the change time, which ``touch -r`` cannot set back."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"one")
    before = weights.stat()
    cache = DigestCache()
    first = cache.sha256(weights)
    cache.save()
    weights.write_bytes(b"two")
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert DigestCache().sha256(weights) != first


def test_model_files_are_what_loads_not_docs_or_copies(tmp_path: Path) -> None:
    folder = small_repo(tmp_path / "model")
    for name in ("tokenizer.json", "chat_template.jinja", "merges.txt", "README.md", "LICENSE.txt"):
        (folder / name).write_text("x", encoding="utf-8")
    (folder / ".gitattributes").write_text("x", encoding="utf-8")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.safetensors").write_text("x", encoding="utf-8")
    assert [path.name for path in model_files(folder)] == [
        "chat_template.jinja",
        "config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_the_files_digest_depends_on_every_name_and_digest() -> None:
    base = files_digest({"a.json": "1" * 64, "b.safetensors": "2" * 64})
    assert base == files_digest({"b.safetensors": "2" * 64, "a.json": "1" * 64})
    assert base != files_digest({"a.json": "1" * 64, "b.safetensors": "3" * 64})
    assert base != files_digest({"a.json": "1" * 64, "c.safetensors": "2" * 64})


def test_the_chat_template_file_wins_over_the_tokenizer_config(tmp_path: Path) -> None:
    folder = small_repo(tmp_path / "model")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": "{{ messages }}"}), encoding="utf-8"
    )
    from_config = chat_template_sha256(folder)
    assert from_config is not None
    (folder / "chat_template.jinja").write_text("{{ other }}", encoding="utf-8")
    assert chat_template_sha256(folder) not in (None, from_config)
    assert chat_template_sha256(small_repo(tmp_path / "bare")) is None


def test_a_stack_difference_is_a_release_not_a_build_label() -> None:
    built = {"torch": "2.13.0+cpu", "transformers": "5.20.0"}
    assert stack_differences(built, {"torch": "2.13.0+cu128", "transformers": "5.20.0"}) == []
    assert stack_differences(built, {"torch": "2.13.0", "transformers": "5.24.0"}) == [
        "transformers 5.20.0 at build, 5.24.0 here"
    ]
    assert stack_differences(built, {"torch": "2.13.0"}) == [
        "transformers 5.20.0 at build, not installed here"
    ]
