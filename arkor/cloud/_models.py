"""Wire models: the JSON shapes of PROTOCOL.md, shared by the client and the control plane.

Python code uses snake_case; the wire uses camelCase. Every model converts at the
boundary through aliases: build with snake_case names, serialise with
``model_dump(by_alias=True)``. Answers may carry keys this version doesn't know (a newer
plane adds fields), so they are kept; what a client asks to run is checked strictly: a
job config refuses unknown keys, NaN and infinities, and holds every setting to the
bounds of the config model it came from (``arkor.config``), so a plane never stores a
job that ``arkor.toml`` could not describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from annotated_types import Le, Lt, MaxLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, core_schema

from arkor.config import BlobDataset, Eval, HuggingfaceDataset, Lora, Resources, Trainer

MAX_INT = 2**63 - 1
"""The largest integer a wire field takes: what SQLite and every JSON reader can hold."""
MAX_TEXT = 4096
"""The longest string a job setting takes unless its config field says less."""
MAX_NAME = 255
"""The longest id, digest or other short name."""


ShortText = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
WireInt = Annotated[int, Field(le=MAX_INT)]


@dataclass(frozen=True)
class AsConfig:
    """``Annotated`` metadata: validate a wire field as the config field it carries.

    The type and bounds come from ``model.<name>`` in ``arkor.config`` (defined once),
    plus what every wire value needs: integers within 63 bits, strings of at most
    :data:`MAX_TEXT` characters. ``None`` is accepted where the wire field's own
    type allows it (a setting left out).
    """

    model: type[BaseModel]
    name: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        field = self.model.model_fields[self.name]
        annotation = field.annotation
        metadata: list[Any] = list(field.metadata)
        if annotation in (int, int | None) and not any(isinstance(m, Le | Lt) for m in metadata):
            metadata.append(Le(MAX_INT))
        if annotation in (str, str | None) and not any(isinstance(m, MaxLen) for m in metadata):
            metadata.append(MaxLen(MAX_TEXT))
        typed = Annotated[(annotation, *metadata)] if metadata else annotation
        schema = handler.generate_schema(typed)
        return core_schema.nullable_schema(schema) if type(None) in get_args(source) else schema


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


class StrictWireModel(WireModel):
    """A request body the plane acts on: unknown keys, NaN and infinities are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


CommitSha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
"""A git commit id, as the Hub names revisions: 40 lowercase hex digits."""
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""A sha256 digest in hex."""


class HuggingfaceDatasetSource(StrictWireModel):
    """A Hub dataset; ``revision`` is the commit ``arkor build`` pinned (None: not pinned)."""

    type: Literal["huggingface"] = "huggingface"
    name: Annotated[str, AsConfig(HuggingfaceDataset, "name")]
    split: Annotated[str | None, AsConfig(HuggingfaceDataset, "split")] = None
    subset: Annotated[str | None, AsConfig(HuggingfaceDataset, "subset")] = None
    revision: CommitSha | None = None


class BlobDatasetSource(StrictWireModel):
    """A dataset downloaded from ``url``; ``token`` is a ``${env:NAME}`` reference until ``start``.

    The pin: ``sha256`` of the bytes ``arkor build`` fetched, else the ``etag`` or
    ``last_modified`` header the server gave (too large to hash at build); none when the
    URL could not be reached at build.
    """

    type: Literal["blob"] = "blob"
    url: Annotated[str, AsConfig(BlobDataset, "url")]
    token: ShortText | None = None
    sha256: Sha256 | None = None
    etag: ShortText | None = None
    last_modified: ShortText | None = None


class FileDatasetSource(StrictWireModel):
    """A local file: frozen as ``path`` + ``sha256`` by ``build``, sent as ``uploadId`` by ``start``."""

    type: Literal["file"] = "file"
    upload_id: Name | None = None
    path: ShortText | None = None
    sha256: Name | None = None


DatasetSource = Annotated[
    HuggingfaceDatasetSource | BlobDatasetSource | FileDatasetSource,
    Field(discriminator="type"),
]

_FORMAT_NAME, _FORMAT_MAPPING = (
    TypeAdapter[Any](arm) for arm in get_args(Trainer.model_fields["dataset_format"].annotation)
)
"""``trainer.dataset_format``: a format name, or a column mapping (config models)."""


def _dataset_format(value: object) -> str | dict[str, str]:
    """A format name or column mapping as ``trainer.dataset_format`` allows, mappings filled in."""
    if not isinstance(value, str | dict):
        raise ValueError("expected a format name or a column mapping")
    try:
        if isinstance(value, str):
            return str(_FORMAT_NAME.validate_python(value))
        return dict(_FORMAT_MAPPING.validate_python(value).model_dump())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:])
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None


DatasetFormat = Annotated[
    str | dict[str, str],
    PlainValidator(_dataset_format, json_schema_input_type=str | dict[Name, Name]),
]


ModelKind = Literal["hub", "store", "folder", "gguf"]
"""Where a ``model`` name points: a Hub id, a model store entry, a folder, a ``.gguf`` file."""


class ModelPin(StrictWireModel):
    """What ``arkor build`` resolved ``model`` to; the worker loads exactly this or refuses.

    A Hub model is pinned by its commit (``revision``); a store entry, a folder or a
    ``.gguf`` file by the sha256 of its files (``files``, name → digest; ``sha256`` over
    them all). ``chat_template_sha256`` records the template that decides what is masked.
    """

    kind: ModelKind
    revision: CommitSha | None = None
    sha256: Sha256 | None = None
    files: Annotated[dict[ShortText, Sha256], Field(max_length=10_000)] | None = None
    chat_template_sha256: Sha256 | None = None


StackVersions = Annotated[dict[Name, Name], Field(max_length=64)]
"""Package name → version, for the training stack (torch, transformers, peft, ...)."""


class EvalSpec(StrictWireModel):
    """``trainer.eval``: what the worker evaluates after training (and at checkpoints when asked).

    ``source`` is the uploaded file of ``path`` (as a ``file`` dataset is uploaded);
    ``held_out_sha256`` is what ``arkor build`` recorded for the held-out rows of a local
    dataset (see :func:`arkor.evals.rows_digest`): the worker refuses rows that differ.
    """

    held_out: Annotated[float | str | None, AsConfig(Eval, "held_out")] = None
    source: FileDatasetSource | None = None
    rows: Annotated[int, AsConfig(Eval, "rows")] = 32
    metrics: Annotated[list[str], AsConfig(Eval, "metrics")] = ["exact_match"]
    max_new_tokens: Annotated[int, AsConfig(Eval, "max_new_tokens")] = 128
    batch_size: Annotated[int, AsConfig(Eval, "batch_size")] = 8
    at_checkpoints: Annotated[bool, AsConfig(Eval, "at_checkpoints")] = False
    held_out_sha256: Sha256 | None = None


class ResourcesSpec(StrictWireModel):
    """``trainer.resources``: what the worker needs; unset keys take the plane's defaults."""

    gpus: Annotated[int | None, AsConfig(Resources, "gpus")] = None
    cpus: Annotated[float | None, AsConfig(Resources, "cpus")] = None
    memory: Annotated[str | None, AsConfig(Resources, "memory")] = None
    processes: Annotated[int | None, AsConfig(Resources, "processes")] = None

    def world_size(self, visible_gpus: int) -> int:
        """How many data-parallel processes train: ``processes``, else one per GPU asked for.

        ``visible_gpus`` caps the GPU count; without GPUs one process trains unless
        ``processes`` says otherwise.
        """
        if self.processes is not None:
            return self.processes
        if self.gpus is not None and visible_gpus > 0:
            return max(1, min(self.gpus, visible_gpus))
        return 1


class JobConfig(StrictWireModel):
    """What a control plane trains: PROTOCOL.md's ``JobConfig``, plus LoRA extras and the seed.

    Each setting takes what its ``arkor.toml`` counterpart takes (``maxSteps`` is
    ``trainer.max_steps``, ``loraR`` is ``trainer.lora.r``).
    """

    model: Annotated[str, AsConfig(Trainer, "model")]
    dataset_source: DatasetSource
    dataset_format: DatasetFormat | None = None
    dataset_split: Annotated[float | str | None, AsConfig(Trainer, "dataset_split")] = None
    max_steps: Annotated[int | None, AsConfig(Trainer, "max_steps")] = None
    num_train_epochs: Annotated[float | None, AsConfig(Trainer, "num_train_epochs")] = None
    learning_rate: Annotated[float | None, AsConfig(Trainer, "learning_rate")] = None
    batch_size: Annotated[int | None, AsConfig(Trainer, "batch_size")] = None
    optim: Annotated[str | None, AsConfig(Trainer, "optim")] = None
    lr_scheduler_type: Annotated[str | None, AsConfig(Trainer, "lr_scheduler_type")] = None
    weight_decay: Annotated[float | None, AsConfig(Trainer, "weight_decay")] = None
    warmup_steps: Annotated[int | None, AsConfig(Trainer, "warmup_steps")] = None
    logging_steps: Annotated[int | None, AsConfig(Trainer, "logging_steps")] = None
    save_steps: Annotated[int | None, AsConfig(Trainer, "save_steps")] = None
    eval_steps: Annotated[int | None, AsConfig(Trainer, "eval_steps")] = None
    lora_r: Annotated[int | None, AsConfig(Lora, "r")] = None
    lora_alpha: Annotated[int | None, AsConfig(Lora, "alpha")] = None
    lora_dropout: Annotated[float | None, AsConfig(Lora, "dropout")] = None
    lora_target_modules: Annotated[str | list[str] | None, AsConfig(Lora, "target_modules")] = None
    max_length: Annotated[int | None, AsConfig(Lora, "max_length")] = None
    load_in_4bit: Annotated[bool | None, AsConfig(Lora, "load_in_4bit")] = Field(
        default=None, alias="loadIn4bit"
    )
    train_on_responses_only: Annotated[
        bool | None, AsConfig(Trainer, "train_on_responses_only")
    ] = None
    precision: Annotated[str | None, AsConfig(Trainer, "precision")] = None
    """None (a manifest from before the key): ``auto``."""
    packing: Annotated[bool | None, AsConfig(Trainer, "packing")] = None
    """None (a manifest from before the key): on."""
    seed: Annotated[int | None, AsConfig(Trainer, "seed")] = None
    dry_run: Annotated[bool | None, AsConfig(Trainer, "dry_run")] = None
    strict_stack: Annotated[bool | None, AsConfig(Trainer, "strict_stack")] = None
    model_pin: ModelPin | None = None
    """The model as ``arkor build`` pinned it; None: not pinned (the worker resolves it)."""
    build_stack: StackVersions | None = None
    """The training stack ``arkor build`` saw; the worker warns (or refuses) when its own differs."""
    eval: EvalSpec | None = None
    """Base-vs-adapter evaluation on held-out rows; None: none."""
    resources: ResourcesSpec | None = None
    """Unset (or empty): one process, the plane's default placement."""


class JobCreate(StrictWireModel):
    """The body of ``POST /v1/jobs``."""

    name: Annotated[str, AsConfig(Trainer, "name")]
    config: JobConfig


def utc_now(*, ago: float = 0.0) -> str:
    """An ISO-8601 UTC timestamp, as every wire timestamp is written; ``ago`` seconds back."""
    moment = datetime.now(UTC) - timedelta(seconds=ago)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class EvalScore(WireModel):
    """One metric on the evaluated rows: the mean over ``count`` rows, for base and adapter.

    ``keys`` (``json_match``) gives the precision of each JSON key of the references.
    A score is None when the model was not evaluated (``base`` of a run without it).
    """

    name: str
    base: float | None = None
    adapter: float | None = None
    count: int = 0
    keys: dict[str, dict[str, float | None]] | None = None


class EvalSample(WireModel):
    """One evaluated row: its prompt, the reference answer and both answers, with scores.

    ``row`` is the row as the data holds it (custom metrics receive it); ``number`` is its
    1-based position in its source, and ``sha256`` its hash (:func:`arkor.evals.row_sha256`).
    ``scores`` maps a metric to ``{"base": …, "adapter": …}``.
    """

    number: int
    sha256: str
    prompt: list[dict[str, Any]]
    reference: str
    base: str | None = None
    adapter: str
    scores: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    row: dict[str, Any] | None = None


class EvalCompleted(_Event):
    """Base and adapter answered the same held-out rows; the metrics and every row's answers.

    ``step`` is the training step of what was evaluated (the final adapter, or the
    checkpoint ``checkpoint``); ``final`` marks the end-of-training eval and ``requested``
    one re-run later by ``arkor eval``. ``error`` is set, and metrics left out, when the
    eval could not run (the run itself still completes).
    """

    type: Literal["eval.completed"] = "eval.completed"
    step: int | None = None
    checkpoint: int | None = None
    final: bool = False
    requested: bool = False
    rows: int = 0
    held_out_rows: int = 0
    held_out_sha256: str | None = None
    metrics: list[EvalScore] = Field(default_factory=list)
    samples: list[EvalSample] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    seconds: float | None = None
    error: str | None = None


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
    | EvalCompleted
    | TrainingCompleted
    | TrainingFailed
    | TrainingCancelled,
    Field(discriminator="type"),
]
"""One event of a job's stream (PROTOCOL.md), as the engine emits it and the plane stores it."""

TERMINAL_EVENT_TYPES = frozenset({"training.completed", "training.failed", "training.cancelled"})
