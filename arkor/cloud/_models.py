"""Wire models: the JSON shapes of PROTOCOL.md, shared by the client and the control plane.

Python code uses snake_case; the wire uses camelCase. Every model converts at the
boundary through aliases: build with snake_case names, serialise with
``model_dump(by_alias=True)``. Unknown keys are kept and forwarded, as the protocol says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
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


class ChatMessage(WireModel):
    """One turn of a conversation, as the chat template receives it."""

    role: str
    content: str


class AdapterRef(WireModel):
    """Which trained adapter answers: a job's final adapter, or one of its checkpoints."""

    kind: Literal["final", "checkpoint"]
    job_id: str
    step: int | None = None


class InferenceRequest(WireModel):
    """The body of ``POST /v1/inference/chat``; without ``adapter`` the base model answers.

    ``tools``, ``tool_choice``, ``response_format`` and ``structured_outputs`` are accepted
    so OpenAI-style callers are not rejected; generation does not act on them yet.
    """

    messages: list[ChatMessage] = Field(min_length=1)
    adapter: AdapterRef | None = None
    base_model: str | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None


class OpenAIModel(BaseModel):
    """Base of the OpenAI response shapes, whose wire names are snake_case as written."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object OpenAI clients expect: absent values are sent as ``null``."""
        return self.model_dump(mode="json")


FinishReason = Literal["stop", "length"]


class CompletionUsage(OpenAIModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionMessage(OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(OpenAIModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(OpenAIModel):
    """A whole answer: the body of a ``stream: false`` inference response."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage


class ChoiceDelta(OpenAIModel):
    """What one chunk adds; fields it does not carry are left out, as OpenAI sends them."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class ChatCompletionChunkChoice(OpenAIModel):
    index: int = 0
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(OpenAIModel):
    """One server-sent event of a streamed answer; the last one carries ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: CompletionUsage | None = None


# --- auth, identity, projects, jobs, uploads (PROTOCOL.md) ------------------------------


class ErrorBody(WireModel):
    """The body of every non-2xx answer: ``{"error": "message", ...}``."""

    error: str


class UpgradeRequired(ErrorBody):
    """The 426 body: the client is older than the plane accepts."""

    min_version: str | None = None
    upgrade: str | None = None


class OAuthConfig(WireModel):
    issuer: str
    client_id: str
    audience: str
    authorize_url: str
    token_url: str


class CliConfig(WireModel):
    """``GET /v1/auth/cli/config``: which sign-in methods this plane offers."""

    anonymous: bool
    oauth: OAuthConfig | None = None


class AnonymousTokenRequest(WireModel):
    kind: Literal["cli"] = "cli"


class Org(WireModel):
    id: str
    slug: str
    name: str


class AnonymousToken(WireModel):
    """``POST /v1/auth/anonymous``: a new anonymous identity with its personal org."""

    token: str
    anonymous_id: str
    kind: str
    personal_org: Org


class User(WireModel):
    id: str
    kind: str
    anonymous_id: str | None = None


class Me(WireModel):
    """``GET /v1/me``."""

    user: User
    orgs: list[Org]


class Project(WireModel):
    id: str
    slug: str
    name: str
    org_id: str


class ProjectCreate(WireModel):
    name: str = Field(min_length=1, max_length=100)
    slug: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class OrgRef(WireModel):
    slug: str


class ProjectList(WireModel):
    org: OrgRef
    projects: list[Project]


class ProjectEnvelope(WireModel):
    project: Project


JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL_JOB_STATUSES = frozenset({"completed", "failed", "cancelled"})


class TrainingJob(WireModel):
    id: str
    org_id: str
    project_id: str
    name: str
    status: JobStatus
    config: JobConfig
    error: str | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None


class JobEnvelope(WireModel):
    """``POST /v1/jobs`` and ``GET /v1/jobs/{id}``; the latter may carry the stored events."""

    job: TrainingJob
    events: list[JobEvent] | None = None


class JobList(WireModel):
    jobs: list[TrainingJob]


class Upload(WireModel):
    id: str
    sha256: str
    size: int


class UploadEnvelope(WireModel):
    upload: Upload


class ArtifactList(WireModel):
    artifacts: list[Artifact]


# --- the worker protocol: a plane's internal routes, called with a job-scoped token -------


class WorkerJob(WireModel):
    """``GET /v1/internal/jobs/{id}``: the job a worker runs, and whether to stop at once."""

    job: TrainingJob
    cancel_requested: bool = False


class WorkerAck(WireModel):
    """The answer to a worker's event or heartbeat: the stored event id, and whether to stop."""

    event_id: int | None = None
    cancel_requested: bool = False

