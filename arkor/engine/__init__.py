"""The engine: model loading, data, LoRA training and generation with transformers + peft.

Only this room imports torch, transformers, peft and datasets, and only when a function
that needs them runs, so importing ``arkor.engine`` is cheap and works without the
``local`` extra until training or inference is asked for.
"""

from arkor.engine._deps import LOCAL_EXTRA_HINT, MissingExtraError, require_local
from arkor.engine._events import EventSink, JsonlSink, ListSink

__all__ = [
    "LOCAL_EXTRA_HINT",
    "EventSink",
    "JsonlSink",
    "ListSink",
    "MissingExtraError",
    "require_local",
]
