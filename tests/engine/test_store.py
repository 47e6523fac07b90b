"""The model store: import (folder and .gguf), list, lookup, remove, names, and its index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arkor._home import arkor_home
from arkor.engine._models import ModelError
from arkor.engine._store import INDEX_NAME, ModelStore, ModelStoreError, slug
from tests.utils.tiny_gguf import build_tiny_gguf

GOOD_NAMES = ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", "a", "org_x/model.v1_2", "x" * 96]
BAD_NAMES = [
    "",
    " ",
    "foo bar",
    "a/b/c",
    "a/",
    "/a",
    "../x",
    "./x",
    ".hidden",
    "-a",
    "a-",
    "a.",
    "a--b",
    "a..b",
    "owner/.git",
    "x" * 97,
    "café/model",
    "a\\b",
]


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tiny_model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def store_entries(root: Path) -> list[str]:
    """Everything in the store folder, hidden files included, so leftovers show."""
    return sorted(path.name for path in root.iterdir()) if root.exists() else []


def test_import_folder_copies_lists_and_looks_up(tiny_model: Path) -> None:
    """The copy is byte-identical, listed with its source and size, and found by its id."""
    store = ModelStore()
    progress: list[str] = []
    stored = store.import_model(tiny_model, "tests/tiny", progress=progress.append)

    assert stored.path == arkor_home() / "models" / "tests--tiny"
    assert stored.kind == "folder"
    assert stored.source == str(tiny_model.resolve())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (stored.path / name).read_bytes() == (tiny_model / name).read_bytes()
    assert stored.size == sum(p.stat().st_size for p in stored.path.iterdir())
    assert progress == [f"Copying {tiny_model.resolve()} into the model store..."]
    assert store.list() == [stored]
    assert store.lookup("tests/tiny") == stored.path
    assert store_entries(store.root) == [INDEX_NAME, "tests--tiny"]

    index = json.loads(store.index_path.read_text(encoding="utf-8"))
    entry = index["models"]["tests/tiny"]
    assert entry["source"] == str(tiny_model.resolve())
    assert entry["size"] == stored.size
    assert entry["imported_at"].endswith("Z")


def test_the_store_follows_arkor_home(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_HOME", str(tmp_path / "elsewhere"))
    stored = ModelStore().import_model(tiny_model, "tests/tiny")
    assert stored.path.parent == tmp_path / "elsewhere" / "models"


def test_hidden_files_are_not_copied(tiny_model: Path, tmp_path: Path) -> None:
    """A ``hf download --local-dir`` folder has a ``.cache``; the store needs only the model."""
    source = tmp_path / "downloaded"
    shutil.copytree(tiny_model, source)
    (source / ".cache" / "huggingface").mkdir(parents=True)
    (source / ".cache" / "huggingface" / "lock").write_text("x")
    stored = ModelStore().import_model(source, "tests/tiny")
    assert not (stored.path / ".cache").exists()
    assert (stored.path / "model.safetensors").is_file()


def test_lookup_of_unknown_or_invalid_names_is_none() -> None:
    store = ModelStore()
    assert store.lookup("tests/none") is None
    assert store.lookup("not an id!") is None
    assert store.list() == []


def test_remove_deletes_the_folder_and_the_entry(tiny_model: Path) -> None:
    store = ModelStore()
    stored = store.import_model(tiny_model, "tests/tiny")
    store.import_model(tiny_model, "tests/other")

    removed = store.remove("tests/tiny")

    assert removed == stored
    assert not stored.path.exists()
    assert [model.name for model in store.list()] == ["tests/other"]
    assert store.lookup("tests/tiny") is None


def test_remove_unknown_lists_the_known_ids(tiny_model: Path) -> None:
    store = ModelStore()
    with pytest.raises(ModelStoreError, match="the store is empty") as empty:
        store.remove("tests/tiny")
    assert empty.value.exit_code == 2
    store.import_model(tiny_model, "tests/b")
    store.import_model(tiny_model, "tests/a")
    with pytest.raises(ModelStoreError, match=r"Stored ids: `tests/a`, `tests/b`\."):
        store.remove("tests/c")


def test_importing_an_existing_id_needs_replace(tiny_model: Path, tmp_path: Path) -> None:
    """Replacing is explicit, and swaps the folder and the entry together."""
    store = ModelStore()
    store.import_model(tiny_model, "tests/tiny")
    with pytest.raises(ModelStoreError, match="already has `tests/tiny`") as error:
        store.import_model(tiny_model, "tests/tiny")
    assert error.value.exit_code == 2

    second = tmp_path / "second"
    shutil.copytree(tiny_model, second)
    (second / "extra.txt").write_text("new")
    stored = store.import_model(second, "tests/tiny", replace=True)

    assert stored.source == str(second.resolve())
    assert (stored.path / "extra.txt").read_text() == "new"
    assert [model.source for model in store.list()] == [str(second.resolve())]
    assert store_entries(store.root) == [INDEX_NAME, "tests--tiny"]


def test_ids_that_differ_only_in_case_are_refused(tiny_model: Path) -> None:
    """On a case-insensitive disk both ids would share one folder."""
    store = ModelStore()
    store.import_model(tiny_model, "Tests/Tiny")
    with pytest.raises(ModelStoreError, match="only in letter case"):
        store.import_model(tiny_model, "tests/tiny")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_hub_style_ids_are_accepted(name: str) -> None:
    assert "/" not in slug(name)
    assert slug(name).replace("--", "/") == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_odd_ids_are_refused_before_anything_is_written(tiny_model: Path, name: str) -> None:
    store = ModelStore()
    with pytest.raises(ModelStoreError, match="is not a valid model id") as error:
        store.import_model(tiny_model, name)
    assert error.value.exit_code == 2
    assert not store.root.exists()


def write_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({}, "has no config.json"),
        ({"tokenizer.json": "{}"}, "has no config.json"),
        ({"config.json": "{}"}, "has no weights"),
        ({"config.json": "{}", "model.gguf.txt": ""}, "has no weights"),
    ],
)
def test_folders_that_are_not_models_are_refused(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    folder = write_folder(tmp_path / "model", files)
    store = ModelStore()
    with pytest.raises(ModelStoreError, match=problem) as error:
        store.import_model(folder, "tests/tiny")
    assert error.value.exit_code == 2
    assert "config.json plus *.safetensors or *.bin" in str(error.value)
    assert store_entries(store.root) == []


def test_missing_paths_and_other_files_are_refused(tmp_path: Path) -> None:
    store = ModelStore()
    with pytest.raises(ModelStoreError, match="no such file or folder"):
        store.import_model(tmp_path / "nope", "tests/tiny")
    other = tmp_path / "weights.gguf"
    other.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelStoreError, match="it is not a GGUF file"):
        store.import_model(other, "tests/tiny")
    assert store_entries(store.root) == []


def test_a_failed_index_write_leaves_the_store_as_it_was(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is replaced atomically, and the new folder goes when its entry can't be written."""
    store = ModelStore()
    store.import_model(tiny_model, "tests/kept")
    before = store.index_path.read_bytes()

    def no_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("arkor._fs.os.fsync", no_disk)
    with pytest.raises(OSError, match="No space left"):
        store.import_model(tiny_model, "tests/lost")

    assert store.index_path.read_bytes() == before
    assert store_entries(store.root) == [INDEX_NAME, "tests--kept"]
    assert [model.name for model in store.list()] == ["tests/kept"]


def test_a_failed_replace_restores_the_previous_model(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore()
    kept = store.import_model(tiny_model, "tests/tiny")

    def no_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("arkor._fs.os.fsync", no_disk)
    with pytest.raises(OSError):
        store.import_model(tiny_model, "tests/tiny", replace=True)

    assert store.list() == [kept]
    assert (kept.path / "model.safetensors").is_file()
    assert store_entries(store.root) == [INDEX_NAME, "tests--tiny"]


def test_a_damaged_index_is_reported(tiny_model: Path) -> None:
    store = ModelStore()
    store.import_model(tiny_model, "tests/tiny")
    store.index_path.write_text("{not json")
    with pytest.raises(ModelError, match=r"index .* is damaged"):
        store.list()


def test_lookup_of_an_entry_whose_folder_is_gone_says_how_to_fix_it(tiny_model: Path) -> None:
    store = ModelStore()
    stored = store.import_model(tiny_model, "tests/tiny")
    shutil.rmtree(stored.path)
    with pytest.raises(ModelError, match="arkor models remove tests/tiny"):
        store.lookup("tests/tiny")


def test_a_gguf_file_is_converted_into_a_model_folder(tiny_model: Path, tiny_gguf: Path) -> None:
    """The stored folder is a normal transformers folder: config, safetensors, tokenizer."""
    store = ModelStore()
    progress: list[str] = []
    stored = store.import_model(tiny_gguf, "tests/tiny-gguf", progress=progress.append)

    assert stored.kind == "gguf"
    assert stored.source == str(tiny_gguf)
    assert len(progress) == 1
    assert progress[0].startswith("Converting tiny.gguf") and "takes a while" in progress[0]
    names = {path.name for path in stored.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    config = json.loads((stored.path / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert store.lookup("tests/tiny-gguf") == stored.path
    assert store_entries(store.root) == [INDEX_NAME, "tests--tiny-gguf"]
