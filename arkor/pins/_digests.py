"""Content digests of local files, cached by path, size, times and inode so rebuilds stay fast.

A model folder of several gigabytes is hashed once; after that a build (and the worker
checking the same folder on the same machine) reads a small JSON cache instead, the way
git's index skips unchanged files. An entry is used only while the file keeps its size,
inode, modification and change times, and ``ctime`` cannot be set back by hand, so an
edited file is always hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from arkor._fs import atomic_write_text, sha256_file
from arkor._home import arkor_home, private_dir

CACHE_FORMAT = 1
_MAX_ENTRIES = 20_000
_SKIPPED_PREFIXES = ("readme", "license", "notice", "use_policy")
_MODEL_SUFFIXES = frozenset(
    {".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".tiktoken", ".gguf"}
)
"""What decides a loaded model: config, weights, tokenizer files and chat template."""


class DigestCache:
    """sha256 of files, remembered in ``arkor_home()/cache/digests.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else arkor_home() / "cache" / "digests.json"
        self._entries = self._read()
        self._dirty = False

    def sha256(self, file: Path) -> str:
        """The hex sha256 of ``file`` (symlinks followed), from the cache when it is unchanged."""
        real = file.resolve()
        info = real.stat()
        key = str(real)
        stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        cached = self._entries.get(key)
        if isinstance(cached, list) and cached[:4] == stamp and len(cached) == 5:
            return str(cached[4])
        digest, _ = sha256_file(real)
        self._entries[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write new entries back (best effort: a cache that cannot be written costs only time)."""
        if not self._dirty:
            return
        entries = {key: value for key, value in self._entries.items() if Path(key).exists()}
        if len(entries) > _MAX_ENTRIES:
            entries = dict(list(entries.items())[-_MAX_ENTRIES:])
        try:
            private_dir(self.path.parent)
            atomic_write_text(
                self.path,
                json.dumps({"format": CACHE_FORMAT, "files": entries}, sort_keys=True) + "\n",
            )
        except OSError:
            return
        self._dirty = False

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return {}
        files = document.get("files")
        return files if isinstance(files, dict) else {}


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that decide what loads: weights, config, tokenizer, template.

    Top-level, non-hidden files with a model file suffix; READMEs and licences are left out
    (editing them changes nothing that trains), and so are subfolders (the Hub's
    ``original/`` copies of the weights that transformers never reads).
    """
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in _MODEL_SUFFIXES
        and not path.name.lower().startswith(_SKIPPED_PREFIXES)
    )


def files_digest(files: dict[str, str]) -> str:
    """One sha256 over ``name → sha256`` pairs, as ``sha256sum`` lists them, sorted by name."""
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def chat_template_sha256(folder: Path) -> str | None:
    """The sha256 of the chat template a tokenizer in ``folder`` would load, if it has one.

    ``chat_template.jinja`` wins over ``chat_template`` in ``tokenizer_config.json``, as in
    transformers; a list of named templates is hashed as canonical JSON.
    """
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return hashlib.sha256(jinja.read_bytes()).hexdigest()
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None
    return template_sha256(template)


def template_sha256(template: object) -> str | None:
    """The sha256 of a chat template as a tokenizer config holds it (text, or named templates)."""
    if isinstance(template, str) and template:
        return hashlib.sha256(template.encode("utf-8")).hexdigest()
    if isinstance(template, list | dict) and template:
        text = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return None
