"""The Python SDK: describe a run, start it on a control plane, follow it with callbacks.

::

    from arkor.sdk import create_trainer

    trainer = create_trainer(name="demo", model="HuggingFaceTB/SmolLM2-135M-Instruct",
                             dataset={"type": "file", "path": "data/train.jsonl"}, max_steps=20)
    result = trainer.wait()          # starts the job if needed, then follows it
"""

from arkor.sdk._arkor import Arkor, create_arkor, is_arkor
from arkor.sdk._chat import shared_system_prompt, training_system_prompt
from arkor.sdk._contexts import (
    CheckpointContext,
    CompletedContext,
    EvalContext,
    FailedContext,
    StartedContext,
    TrainingLogContext,
)
from arkor.sdk._dispatch import CALLBACK_NAMES, CallbackError, MetricError
from arkor.sdk._runner import load_custom_metrics, load_entry, run_trainer, trainer_from_manifest
from arkor.sdk._session import (
    LOCAL_PLANE_URL,
    PlaneTarget,
    Session,
    connect,
    open_session,
    resolve_plane,
)
from arkor.sdk._trainer import AbortHandle, Trainer, TrainingResult, WaitAborted, create_trainer

__all__ = [
    "CALLBACK_NAMES",
    "LOCAL_PLANE_URL",
    "AbortHandle",
    "Arkor",
    "CallbackError",
    "CheckpointContext",
    "CompletedContext",
    "EvalContext",
    "FailedContext",
    "MetricError",
    "PlaneTarget",
    "Session",
    "StartedContext",
    "Trainer",
    "TrainingLogContext",
    "TrainingResult",
    "WaitAborted",
    "connect",
    "create_arkor",
    "create_trainer",
    "is_arkor",
    "load_custom_metrics",
    "load_entry",
    "open_session",
    "resolve_plane",
    "run_trainer",
    "shared_system_prompt",
    "trainer_from_manifest",
    "training_system_prompt",
]
