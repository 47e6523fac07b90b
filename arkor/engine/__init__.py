"""The engine: model loading, data, LoRA training and generation with transformers + peft.

Only this room imports torch, transformers, peft and datasets, and only when a function
that needs them runs. Names load lazily, so ``arkor models list`` (which needs only the
model store) pays for nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arkor._lazy import lazy_exports

if TYPE_CHECKING:
    from arkor.engine._deps import LOCAL_EXTRA_HINT, MissingExtraError, require_local
    from arkor.engine._events import EventSink, JsonlSink, ListSink
    from arkor.engine._infer import EngineStats, GenerationRequest, InferenceEngine, InferenceError
    from arkor.engine._inspect import RowReport, RowsInspection, TokenPiece, inspect_rows
    from arkor.engine._run import (
        ADAPTER_DIRNAME,
        CHECKPOINTS_DIRNAME,
        TrainingOutcome,
        TrainingRun,
        train,
    )
    from arkor.engine._store import ModelStore, ModelStoreError, StoredModel

_LAZY = {
    "LOCAL_EXTRA_HINT": "arkor.engine._deps",
    "MissingExtraError": "arkor.engine._deps",
    "require_local": "arkor.engine._deps",
    "EventSink": "arkor.engine._events",
    "JsonlSink": "arkor.engine._events",
    "ListSink": "arkor.engine._events",
    "EngineStats": "arkor.engine._infer",
    "GenerationRequest": "arkor.engine._infer",
    "InferenceEngine": "arkor.engine._infer",
    "InferenceError": "arkor.engine._infer",
    "RowReport": "arkor.engine._inspect",
    "RowsInspection": "arkor.engine._inspect",
    "TokenPiece": "arkor.engine._inspect",
    "inspect_rows": "arkor.engine._inspect",
    "ADAPTER_DIRNAME": "arkor.engine._run",
    "CHECKPOINTS_DIRNAME": "arkor.engine._run",
    "TrainingOutcome": "arkor.engine._run",
    "TrainingRun": "arkor.engine._run",
    "train": "arkor.engine._run",
    "ModelStore": "arkor.engine._store",
    "ModelStoreError": "arkor.engine._store",
    "StoredModel": "arkor.engine._store",
}

__all__ = [
    "ADAPTER_DIRNAME",
    "CHECKPOINTS_DIRNAME",
    "LOCAL_EXTRA_HINT",
    "EngineStats",
    "EventSink",
    "GenerationRequest",
    "InferenceEngine",
    "InferenceError",
    "JsonlSink",
    "ListSink",
    "MissingExtraError",
    "ModelStore",
    "ModelStoreError",
    "RowReport",
    "RowsInspection",
    "StoredModel",
    "TokenPiece",
    "TrainingOutcome",
    "TrainingRun",
    "inspect_rows",
    "require_local",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
