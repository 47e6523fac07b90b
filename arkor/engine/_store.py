"""The local model store: models imported once, then named like Hub ids, offline.

An air-gapped machine cannot fetch ``HuggingFaceTB/SmolLM2-135M-Instruct`` from the Hub,
so a user imports a copy under that same id and configs work unchanged on both sides.
Layout under ``arkor_home()/models``::

    index.json                                  id -> folder, source, kind, size, imported_at
    HuggingFaceTB--SmolLM2-135M-Instruct/       a normal transformers folder (config + weights)
    .gguf-cache/<sha256 of the .gguf file>/     .gguf files named directly in a config

A ``.gguf`` file is converted once into a transformers folder, because loading GGUF
dequantizes every tensor and takes tens of seconds. Folders appear by an atomic rename
and the index by an atomic write, so a crash leaves the store as it was. Listing and
removing only read JSON and delete folders: they never import torch or transformers.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from arkor._fs import atomic_write_text, sha256_file
from arkor._home import arkor_home
from arkor.engine._models import ModelError
from arkor.errors import UsageError

StoredKind = Literal["folder", "gguf"]
Progress = Callable[[str], None]

INDEX_NAME = "index.json"
GGUF_CACHE_NAME = ".gguf-cache"
_INDEX_FORMAT = 1
_GGUF_MAGIC = b"GGUF"
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# The Hub's repo id rules: a name of up to 96 characters, optionally behind one owner.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_PART}(?:/{_PART})?")


class ModelStoreError(UsageError):
    """A store id or an import source is wrong; the message says what a valid one is."""


@dataclass(frozen=True)
class StoredModel:
    """One imported model."""

    name: str
    path: Path
    source: str
    """The folder or ``.gguf`` file it was imported from, as an absolute path."""
    kind: StoredKind
    size: int
    """Bytes on disk in the store."""
    imported_at: str
    """UTC, ISO 8601."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "kind": self.kind,
            "size": self.size,
            "imported_at": self.imported_at,
        }


def validate_name(name: str) -> str:
    """Return ``name`` when it is a Hub-style id (``owner/name`` or ``name``), else raise."""
    if not _NAME.fullmatch(name) or "--" in name or ".." in name:
        raise ModelStoreError(
            f"`{name}` is not a valid model id. Use a Hub-style id such as "
            "`HuggingFaceTB/SmolLM2-135M-Instruct`: letters, digits, `-`, `_` and `.`, at most one "
            "`/`, no `--` or `..`, starting and ending with a letter, digit or `_`."
        )
    return name


def slug(name: str) -> str:
    """The folder name for ``name``: one path component, distinct for every valid id."""
    return validate_name(name).replace("/", "--")


def model_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a loadable transformers model, or None when it looks like one."""
    if not (folder / "config.json").is_file():
        return "has no config.json"
    if not any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        return "has no weights (*.safetensors or *.bin files)"
    return None


def folder_size(folder: Path) -> int:
    """Bytes in the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def is_gguf(path: Path) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(_GGUF_MAGIC)) == _GGUF_MAGIC
    except OSError:
        return False


class ModelStore:
    """The models imported on this machine (``arkor_home()/models`` unless ``root`` is given)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else arkor_home() / "models"

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def list(self) -> builtins.list[StoredModel]:
        """Every stored model, sorted by id."""
        return [self._entry(name, raw) for name, raw in sorted(self._read_index().items())]

    def lookup(self, name: str) -> Path | None:
        """The folder stored under ``name``, or None when there is none (or ``name`` is no id)."""
        raw = self._read_index().get(name)
        if raw is None:
            return None
        folder = self._entry(name, raw).path
        if not folder.is_dir():
            raise ModelError(
                f"The model store lists `{name}`, but its folder {folder} is gone. Run "
                f"`arkor models remove {name}` and import the model again."
            )
        return folder

    def import_model(
        self, path: Path, name: str, *, replace: bool = False, progress: Progress | None = None
    ) -> StoredModel:
        """Copy a model folder, or convert a ``.gguf`` file, into the store as ``name``.

        ``replace`` overwrites an existing model of that id; without it, that is an error.
        ``progress`` receives a line before the long part starts.
        """
        folder_name = slug(name)
        source = path.expanduser().resolve()
        index = self._read_index()
        self._check_free(name, folder_name, index, replace)
        if source.is_dir():
            problem = model_folder_problem(source)
            if problem is not None:
                raise ModelStoreError(
                    f"Cannot import {source}: the folder {problem}. Import a transformers model "
                    "folder (config.json plus *.safetensors or *.bin weights) or a .gguf file."
                )
            kind: StoredKind = "folder"
        elif source.is_file() and is_gguf(source):
            kind = "gguf"
        elif source.is_file():
            raise ModelStoreError(
                f"Cannot import {source}: it is not a GGUF file. Import a .gguf file or a "
                "transformers model folder (config.json plus weights)."
            )
        else:
            raise ModelStoreError(f"Cannot import {source}: no such file or folder.")

        self.root.mkdir(parents=True, exist_ok=True)
        staging = _new_folder(self.root, f".import-{folder_name}")
        target = self.root / folder_name
        retired = self.root / f".removed-{staging.name}"
        try:
            if kind == "folder":
                if progress is not None:
                    progress(f"Copying {source} into the model store...")
                _copy_folder(source, staging)
            else:
                if progress is not None:
                    progress(_converting_line(source))
                convert_gguf(source, staging)
            entry = StoredModel(
                name=name,
                path=target,
                source=str(source),
                kind=kind,
                size=folder_size(staging),
                imported_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            )
            if target.exists():
                target.rename(retired)
            staging.rename(target)
            index[name] = _raw(entry)
            try:
                self._write_index(index)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                if retired.exists():
                    retired.rename(target)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)
        return entry

    def remove(self, name: str) -> StoredModel:
        """Delete ``name`` from the store; return what it was."""
        index = self._read_index()
        raw = index.pop(name, None)
        if raw is None:
            known = ", ".join(f"`{known}`" for known in sorted(index)) or "none: the store is empty"
            raise ModelStoreError(
                f"No model `{name}` in the model store ({self.root}). Stored ids: {known}."
            )
        entry = self._entry(name, raw)
        self._write_index(index)
        shutil.rmtree(entry.path, ignore_errors=True)
        return entry

    def gguf_folder(self, path: Path, *, progress: Progress | None = None) -> Path:
        """A transformers folder for the ``.gguf`` file ``path``, converted on first use only.

        The cache is keyed by the file's sha256, so a changed file converts again and a copy
        of the same file elsewhere reuses the folder.
        """
        source = path.expanduser().resolve()
        if not is_gguf(source):
            raise ModelError(f"{source} is not a GGUF file (it does not start with `GGUF`).")
        digest, _ = sha256_file(source)
        cache = self.root / GGUF_CACHE_NAME
        target = cache / digest
        if target.is_dir():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = _new_folder(cache, f".{digest}")
        try:
            if progress is not None:
                progress(_converting_line(source))
            convert_gguf(source, staging)
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # not another process finishing the same file first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _check_free(
        self, name: str, folder_name: str, index: dict[str, dict[str, Any]], replace: bool
    ) -> None:
        if name in index and not replace:
            raise ModelStoreError(
                f"The model store already has `{name}`. Remove it first with "
                f"`arkor models remove {name}`, or import again with --force to replace it."
            )
        clash = next(
            (
                other
                for other in index
                if other != name and slug(other).lower() == folder_name.lower()
            ),
            None,
        )
        if clash is not None:
            raise ModelStoreError(
                f"`{name}` differs from the stored `{clash}` only in letter case, and some file "
                "systems cannot keep both. Use the same spelling, or another id."
            )

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(text)
            models = document["models"]
            if not isinstance(models, dict):
                raise TypeError("`models` is not an object")
        except (ValueError, KeyError, TypeError) as error:
            raise ModelError(
                f"The model store index {self.index_path} is damaged ({error}). Move it aside and "
                "import the models again; their folders next to it are intact."
            ) from error
        return models

    def _write_index(self, models: dict[str, dict[str, Any]]) -> None:
        document = {"format": _INDEX_FORMAT, "models": models}
        atomic_write_text(self.index_path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def _entry(self, name: str, raw: dict[str, Any]) -> StoredModel:
        return StoredModel(
            name=name,
            path=self.root / str(raw["folder"]),
            source=str(raw["source"]),
            kind=raw["kind"],
            size=int(raw["size"]),
            imported_at=str(raw["imported_at"]),
        )


def convert_gguf(file: Path, target: Path) -> None:
    """Load a ``.gguf`` file with transformers and save it to ``target`` as a normal folder.

    The weights are dequantized to the file's float type (float32 for quantized files), so
    the folder loads fast, trains, and needs no GGUF support afterwards.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(file.parent), file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **_dequantized())
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        detail = " ".join(str(error).split())
        raise ModelError(
            f"Cannot convert {file} into a transformers model: {detail}. The file needs an "
            "architecture transformers can read from GGUF (e.g. llama, mistral, qwen2, gemma); "
            "otherwise import the original model folder instead."
        ) from error
    # A GGUF-loaded model keeps its quantizer, which refuses to save; the weights are dense now.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _dequantized() -> dict[str, Any]:
    """Ask for dense weights: transformers 5 would keep GGUF blocks packed when it can."""
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers 4 always dequantizes GGUF weights
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _new_folder(parent: Path, prefix: str) -> Path:
    """A fresh folder to build in, with the usual permissions (``mkdtemp`` would give 0700)."""
    folder = parent / f"{prefix}.{secrets.token_hex(6)}"
    folder.mkdir()
    return folder


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a model folder's files (following the HF cache's symlinks), skipping hidden ones."""
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True, symlinks=False
    )


def _converting_line(source: Path) -> str:
    return (
        f"Converting {source.name} into a transformers model folder. This loads and "
        "dequantizes the whole model once, which takes a while..."
    )


def _raw(entry: StoredModel) -> dict[str, Any]:
    return {
        "folder": entry.path.name,
        "source": entry.source,
        "kind": entry.kind,
        "size": entry.size,
        "imported_at": entry.imported_at,
    }
