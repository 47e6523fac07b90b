"""Pins: what a run's model, data and training stack resolve to, and checks that they still do.

``arkor build`` records pins in the manifest through this room; the worker checks them
through it before it trains, and resolves the ones a build could not (offline, not cached).
Nothing here imports torch or transformers.
"""

from arkor.pins._blob import BLOB_HASH_LIMIT, BlobPin, pin_blob
from arkor.pins._digests import DigestCache, chat_template_sha256, files_digest, model_files
from arkor.pins._hub import (
    NotOnHub,
    Revision,
    Unresolved,
    cached_revision,
    hub_cache_dir,
    offline,
    resolve_revision,
    snapshot_folder,
)
from arkor.pins._model import PinMismatch, check_model_pin, pin_located, pin_model
from arkor.pins._stack import STACK_PACKAGES, installed_stack, stack_differences

__all__ = [
    "BLOB_HASH_LIMIT",
    "STACK_PACKAGES",
    "BlobPin",
    "DigestCache",
    "NotOnHub",
    "PinMismatch",
    "Revision",
    "Unresolved",
    "cached_revision",
    "chat_template_sha256",
    "check_model_pin",
    "files_digest",
    "hub_cache_dir",
    "installed_stack",
    "model_files",
    "offline",
    "pin_blob",
    "pin_located",
    "pin_model",
    "resolve_revision",
    "snapshot_folder",
    "stack_differences",
]
