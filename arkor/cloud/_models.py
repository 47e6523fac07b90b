"""Wire models: the JSON shapes of PROTOCOL.md, shared by the client and the control plane.

Python code uses snake_case; the wire uses camelCase. Every model converts at the
boundary through aliases: build with snake_case names, serialise with
``model_dump(by_alias=True)``. Unknown keys are kept and forwarded, as the protocol says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """Base of every wire model: camelCase aliases, snake_case names both accepted."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent on the wire: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class HuggingfaceDatasetSource(WireModel):
    type: Literal["huggingface"] = "huggingface"
    name: str
    split: str | None = None
    subset: str | None = None


class BlobDatasetSource(WireModel):
    """A dataset downloaded from ``url``; ``token`` is a ``${env:NAME}`` reference until ``start``."""

    type: Literal["blob"] = "blob"
    url: str
    token: str | None = None


class FileDatasetSource(WireModel):
    """A local file: frozen as ``path`` + ``sha256`` by ``build``, sent as ``uploadId`` by ``start``."""

    type: Literal["file"] = "file"
    upload_id: str | None = None
    path: str | None = None
    sha256: str | None = None


DatasetSource = Annotated[
    HuggingfaceDatasetSource | BlobDatasetSource | FileDatasetSource,
    Field(discriminator="type"),
]


class JobConfig(WireModel):
    """What a control plane trains: PROTOCOL.md's ``JobConfig``, plus LoRA extras and the seed."""

    model: str
    dataset_source: DatasetSource
    dataset_format: str | dict[str, Any] | None = None
    dataset_split: float | str | None = None
    max_steps: int | None = None
    num_train_epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    optim: str | None = None
    lr_scheduler_type: str | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    logging_steps: int | None = None
    save_steps: int | None = None
    eval_steps: int | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_target_modules: str | list[str] | None = None
    max_length: int | None = None
    load_in_4bit: bool | None = Field(default=None, alias="loadIn4bit")
    train_on_responses_only: bool | None = None
    seed: int | None = None
    dry_run: bool | None = None


class JobCreate(WireModel):
    """The body of ``POST /v1/jobs``."""

    name: str
    config: JobConfig


def utc_now() -> str:
    """An ISO-8601 UTC timestamp, as every wire timestamp is written."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Artifact(WireModel):
    """A file a job produced, by its path relative to the job's artifact root."""

    path: str
    size: int
    sha256: str | None = None


class _Event(WireModel):
    job_id: str
    timestamp: str = Field(default_factory=utc_now)


class TrainingStarted(_Event):
    type: Literal["training.started"] = "training.started"
    metadata: dict[str, Any] | None = None


class TrainingLog(_Event):
    type: Literal["training.log"] = "training.log"
    step: int
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    samples_per_second: float | None = None


class CheckpointSaved(_Event):
    type: Literal["checkpoint.saved"] = "checkpoint.saved"
    step: int
    artifacts: list[Artifact] | None = None


class TrainingCompleted(_Event):
    type: Literal["training.completed"] = "training.completed"
    metrics: dict[str, Any] | None = None
    artifacts: list[Artifact] | None = None


class TrainingFailed(_Event):
    type: Literal["training.failed"] = "training.failed"
    error: str
    step: int | None = None


class TrainingCancelled(_Event):
    type: Literal["training.cancelled"] = "training.cancelled"
    step: int | None = None


JobEvent = Annotated[
    TrainingStarted
    | TrainingLog
    | CheckpointSaved
    | TrainingCompleted
    | TrainingFailed
    | TrainingCancelled,
    Field(discriminator="type"),
]
"""One event of a job's stream (PROTOCOL.md), as the engine emits it and the plane stores it."""

TERMINAL_EVENT_TYPES = frozenset({"training.completed", "training.failed", "training.cancelled"})
