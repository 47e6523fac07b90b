"""Pin a model: a Hub id to its commit, local weights to the sha256 of their files.

``arkor build`` calls :func:`pin_model` to write the pin; the worker calls it again for
a model the manifest left unpinned, and :func:`check_model_pin` to refuse local weights
that changed since the build.
"""

from __future__ import annotations

import hashlib
import json

from arkor.cloud import ModelPin
from arkor.engine._models import LocatedModel, ModelError, locate_model
from arkor.engine._store import GGUF_CACHE_NAME, ModelStore
from arkor.pins._digests import (
    DigestCache,
    chat_template_sha256,
    files_digest,
    model_files,
    template_sha256,
)
from arkor.pins._hub import Revision, fetch_file, resolve_revision, snapshot_folder

__all__ = ["PinMismatch", "check_model_pin", "pin_located", "pin_model"]


class PinMismatch(ModelError):
    """The weights found are not the ones the manifest pinned; the message says what changed."""


def pin_model(model: str, cache: DigestCache) -> tuple[ModelPin, Revision | None]:
    """The pin of ``model`` as it is now, and for a Hub id where its commit was read.

    Raises :class:`~arkor.pins._hub.Unresolved` (no network and no cache),
    :class:`~arkor.pins._hub.NotOnHub`, or a ``ModelError`` for a path that is not a model.
    """
    return pin_located(locate_model(model), cache)


def pin_located(located: LocatedModel, cache: DigestCache) -> tuple[ModelPin, Revision | None]:
    """:func:`pin_model` for a model already located."""
    if located.path is None:
        revision = resolve_revision("model", located.requested)
        template = _hub_template(located.requested, revision.sha)
        pin = ModelPin(kind="hub", revision=revision.sha, chat_template_sha256=template)
        return pin, revision
    if located.kind == "gguf":
        digest = cache.sha256(located.path)
        converted = ModelStore().root / GGUF_CACHE_NAME / digest
        template = chat_template_sha256(converted) if converted.is_dir() else None
        files = {located.path.name: digest}
        return ModelPin(
            kind="gguf", sha256=digest, files=files, chat_template_sha256=template
        ), None
    files = {path.name: cache.sha256(path) for path in model_files(located.path)}
    return ModelPin(
        kind=located.kind,
        sha256=files_digest(files),
        files=files,
        chat_template_sha256=chat_template_sha256(located.path),
    ), None


def check_model_pin(located: LocatedModel, pin: ModelPin, cache: DigestCache) -> None:
    """Raise :class:`PinMismatch` unless ``located`` is what ``pin`` pinned.

    A Hub pin needs no check here: the model is loaded at the pinned commit.
    """
    name = located.requested
    if located.kind != pin.kind:
        raise PinMismatch(
            f"The model `{name}` was pinned by `arkor build` as {_kind_phrase(pin.kind)}, but "
            f"here it is {_kind_phrase(located.kind)}{_at(located)}, so this is not the model "
            "the manifest describes. Make the same model available here (as it was at build), "
            "or run `arkor build` where the job runs to re-lock the manifest."
        )
    if pin.kind == "hub" or located.path is None:
        return
    current, _ = pin_located(located, cache)
    if current.sha256 == pin.sha256:
        return
    changes = _file_changes(pin.files or {}, current.files or {})
    raise PinMismatch(
        f"The model `{name}` ({_kind_phrase(located.kind)}{_at(located)}) is not the one the "
        f"manifest pinned: {changes} since `arkor build` (pinned sha256 {_short(pin.sha256)}, "
        f"now {_short(current.sha256)}). Put the pinned weights back, or run `arkor build` to "
        "re-lock the manifest on the weights there now."
    )


def _hub_template(repo_id: str, sha: str) -> str | None:
    """The chat template's sha256 at a commit: from the cached snapshot, else two small files."""
    snapshot = snapshot_folder("model", repo_id, sha)
    if snapshot is not None:
        cached = chat_template_sha256(snapshot)
        if cached is not None or (snapshot / "tokenizer_config.json").is_file():
            return cached
    jinja = fetch_file(repo_id, sha, "chat_template.jinja")
    if jinja is not None:
        return hashlib.sha256(jinja).hexdigest()
    config = fetch_file(repo_id, sha, "tokenizer_config.json")
    if config is None:
        return None
    try:
        return template_sha256(json.loads(config).get("chat_template"))
    except (ValueError, AttributeError):
        return None


def _file_changes(pinned: dict[str, str], current: dict[str, str]) -> str:
    """``model.safetensors changed, tokenizer.json was added``: what differs, by file name."""
    parts = [
        f"{name} changed"
        for name in sorted(pinned)
        if name in current and current[name] != pinned[name]
    ]
    parts += [f"{name} is gone" for name in sorted(pinned) if name not in current]
    parts += [f"{name} was added" for name in sorted(current) if name not in pinned]
    return ", ".join(parts) or "its files changed"


def _kind_phrase(kind: str) -> str:
    return {
        "hub": "a Hugging Face Hub id",
        "store": "a model store entry",
        "folder": "a model folder",
        "gguf": "a .gguf file",
    }[kind]


def _at(located: LocatedModel) -> str:
    return f" at {located.path}" if located.path is not None else ""


def _short(digest: str | None) -> str:
    return (digest or "none")[:12]
