"""The engine: model loading, data, LoRA training and generation with transformers + peft.

Only this room imports torch, transformers, peft and datasets, and only when a function
that needs them runs, so importing ``arkor.engine`` is cheap and works without the
``local`` extra until training or inference is asked for.
"""

from arkor.engine._deps import LOCAL_EXTRA_HINT, MissingExtraError, require_local
from arkor.engine._events import EventSink, JsonlSink, ListSink
from arkor.engine._run import (
    ADAPTER_DIRNAME,
    CHECKPOINTS_DIRNAME,
    TrainingOutcome,
    TrainingRun,
    train,
)

__all__ = [
    "ADAPTER_DIRNAME",
    "CHECKPOINTS_DIRNAME",
    "LOCAL_EXTRA_HINT",
    "EventSink",
    "JsonlSink",
    "ListSink",
    "MissingExtraError",
    "TrainingOutcome",
    "TrainingRun",
    "require_local",
    "train",
]
