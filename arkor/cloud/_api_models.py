"""The API's request and response shapes: auth, projects, jobs, uploads, inference, workers.

The job contract itself (``JobConfig``, dataset sources, events) lives in
``arkor.cloud._models``; these envelopes build on it. They are a module of their own so
that ``arkor build``, which needs only the job contract, doesn't pay for building them.
OpenAI's chat shapes keep OpenAI's snake_case names on the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from arkor.cloud._models import (
    Artifact,
    AsConfig,
    DatasetFormat,
    EvalCompleted,
    JobConfig,
    JobEvent,
    ModelPin,
    Name,
    ShortText,
    StrictWireModel,
    WireInt,
    WireModel,
)
from arkor.config import Eval, Lora, Trainer


class ChatMessage(WireModel):
    """One turn of a conversation, as the chat template receives it."""

    role: Name
    content: str


class AdapterRef(StrictWireModel):
    """Which trained adapter answers: a job's final adapter, or one of its checkpoints."""

    kind: Literal["final", "checkpoint"]
    job_id: Name
    step: WireInt | None = Field(default=None, ge=0)


class InferenceRequest(WireModel):
    """The body of ``POST /v1/inference/chat``; without ``adapter`` the base model answers.

    ``tools``, ``tool_choice``, ``response_format`` and ``structured_outputs`` are accepted
    so OpenAI-style callers are not rejected; generation does not act on them yet.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    messages: list[ChatMessage] = Field(min_length=1)
    adapter: AdapterRef | None = None
    base_model: ShortText | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: WireInt | None = Field(default=None, ge=1)
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


class OpenAIErrorDetail(OpenAIModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(OpenAIModel):
    """An error as OpenAI's API sends one, so OpenAI's clients raise their usual exceptions."""

    error: OpenAIErrorDetail


class ChatCompletionRequestMessage(OpenAIModel):
    """A message as OpenAI clients send it: text, or a list of text parts."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, its text parts joined."""
        if isinstance(self.content, list):
            return "".join(
                str(part.get("text", "")) for part in self.content if part.get("type") == "text"
            )
        return self.content or ""


class ChatCompletionRequest(OpenAIModel):
    """The body of a deployment's ``POST /v1/chat/completions``, as OpenAI clients send it.

    ``model`` is ignored (the deployment decides the model). ``response_format`` (JSON, or
    JSON following a schema) is honoured by constrained decoding. Settings this server does
    not act on yet (``tools``, ``n`` > 1, ``stop``) are refused with a clear 400 rather than
    ignored; other unknown fields are ignored, as OpenAI's clients send many.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    messages: list[ChatCompletionRequestMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    def unsupported(self) -> str | None:
        """Why this request cannot be answered as asked, or None."""
        if self.tools:
            return "`tools` (function calling) is not supported by Arkor deployments yet."
        if self.n is not None and self.n > 1:
            return "`n` greater than 1 is not supported: ask once per answer."
        if self.stop:
            return "`stop` sequences are not supported yet."
        kind = (self.response_format or {}).get("type", "text")
        if kind not in ("text", "json_object", "json_schema"):
            return (
                f"`response_format` of type `{kind}` is unknown: use `text`, `json_object` or "
                "`json_schema`."
            )
        return None


# --- auth, identity, projects, jobs, uploads (PROTOCOL.md) ------------------------------


class ErrorBody(WireModel):
    """The body of every non-2xx answer: ``{"error": "message", ...}``."""

    error: str


class InvalidRequest(ErrorBody):
    """The 422 body: what is wrong with the request, one issue per field."""

    issues: list[str]


class InternalError(ErrorBody):
    """The 500 body: the plane's log holds the cause under ``request_id``."""

    request_id: str


class UpgradeRequired(ErrorBody):
    """The 426 body: the client is older than the plane accepts."""

    min_version: str | None = None
    upgrade: str | None = None


class OAuthConfig(WireModel):
    """The OpenID provider a plane accepts access tokens from, and where a CLI signs in.

    ``audience`` is the ``aud`` the plane checks (a client asks for it as the RFC 8707
    ``resource``); the device and revocation endpoints are absent when the provider has none.
    """

    issuer: str
    client_id: str
    audience: str
    authorize_url: str
    token_url: str
    device_authorization_url: str | None = None
    revocation_url: str | None = None


class CliConfig(WireModel):
    """``GET /v1/auth/cli/config``: which plane this is, and which sign-in methods it offers.

    ``plane_id`` is stable for the plane's database (credentials are keyed by it); a plane
    that does not announce one is known by its URL.
    """

    plane_id: str | None = None
    anonymous: bool
    oauth: OAuthConfig | None = None


class AnonymousTokenRequest(WireModel):
    """``home_key`` (from the plane's home) claims the identity that owns that home."""

    kind: Literal["cli"] = "cli"
    home_key: str | None = Field(default=None, max_length=256)


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
    token_id: str | None = None


class TokenInfo(WireModel):
    """One of the caller's tokens; the secret itself is never kept, only its hash."""

    id: str
    created_at: str
    current: bool


class TokenList(WireModel):
    """``GET /v1/auth/tokens``: the caller's tokens, oldest first."""

    tokens: list[TokenInfo]


class User(WireModel):
    """The caller: ``kind`` is ``anonymous`` or ``oidc``; an OIDC user has its issuer and
    whatever name and email its provider's claims carried."""

    id: str
    kind: str
    anonymous_id: str | None = None
    issuer: str | None = None
    subject: str | None = None
    email: str | None = None
    name: str | None = None
    plane_owner: bool | None = None
    """True for the first person who signed in through the provider: they manage every org."""


class Me(WireModel):
    """``GET /v1/me``."""

    user: User
    orgs: list[Org]


class Project(WireModel):
    id: str
    slug: str
    name: str
    org_id: str


class ProjectCreate(StrictWireModel):
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


class JobPlacement(WireModel):
    """Where a job's worker runs (or, for a queued job, was submitted)."""

    executor: Literal["local", "ray"]
    executor_job_id: str | None = None
    """The worker's id there: its process id, or the Ray job's submission id."""
    node: str | None = None
    """The machine it runs on, as the executor names it (Ray: node id and address)."""


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
    placement: JobPlacement | None = None
    """Where the worker runs; None until one was started."""
    queue_reason: str | None = None
    """Why a queued job waits, e.g. for a Ray cluster's GPUs."""


class JobEnvelope(WireModel):
    """``POST /v1/jobs`` and ``GET /v1/jobs/{id}``; the latter may carry the stored events."""

    job: TrainingJob
    events: list[JobEvent] | None = None


class JobList(WireModel):
    """``GET /v1/jobs``: a page of jobs, newest first; ``next_cursor`` asks for the next one."""

    jobs: list[TrainingJob]
    next_cursor: str | None = None


class Upload(WireModel):
    id: str
    sha256: str
    size: int


class UploadEnvelope(WireModel):
    upload: Upload


class ArtifactList(WireModel):
    artifacts: list[Artifact]


# --- on-demand evaluation: ``POST /v1/jobs/{id}/evals`` answers NDJSON lines -------------


class EvalRequest(StrictWireModel):
    """The body of ``POST /v1/jobs/{id}/evals``: run a finished job's eval again.

    ``checkpoint`` evaluates the adapter of that checkpoint (a step) instead of the final
    one; ``rows`` evaluates that many held-out rows instead of the job's ``eval.rows``.
    """

    checkpoint: WireInt | None = Field(default=None, ge=0)
    rows: Annotated[int | None, AsConfig(Eval, "rows")] = None


class EvalProgress(WireModel):
    """A line of the answer: ``done`` of ``total`` generations are finished."""

    type: Literal["progress"] = "progress"
    done: int
    total: int


class EvalResult(WireModel):
    """The last line of a successful answer: the event, as stored with the job."""

    type: Literal["event"] = "event"
    event: EvalCompleted


class EvalFailure(WireModel):
    """The last line of an answer whose eval could not run."""

    type: Literal["error"] = "error"
    message: str


EvalLine = Annotated[EvalProgress | EvalResult | EvalFailure, Field(discriminator="type")]
"""One line of ``POST /v1/jobs/{id}/evals``'s ``application/x-ndjson`` answer."""


# --- the worker protocol: a plane's internal routes, called with a job-scoped token -------


class WorkerJob(WireModel):
    """``GET /v1/internal/jobs/{id}``: the job a worker runs, and whether to stop at once."""

    job: TrainingJob
    cancel_requested: bool = False
    resume: bool = False
    """Continue from the job's newest checkpoint: an earlier run of it was cut off."""


class WorkerAck(WireModel):
    """The answer to a worker's event or heartbeat: the stored event id, and whether to stop."""

    event_id: int | None = None
    cancel_requested: bool = False


# --- data inspection: how training tokenizes and masks sample rows -------------------------

MAX_INSPECT_ROWS = 2000
"""The most rows one ``POST /v1/data/inspect`` takes (the plane's body limit may allow fewer)."""


class DataInspectRequest(StrictWireModel):
    """The body of ``POST /v1/data/inspect``: rows to tokenize and mask as a job would.

    The settings are the job config's, so a caller sends what it would train with; the
    model's tokenizer is loaded at ``model_pin.revision`` when one is given. ``detail``
    picks the row whose tokens come back one by one.
    """

    model: Annotated[str, AsConfig(Trainer, "model")]
    model_pin: ModelPin | None = None
    dataset_format: DatasetFormat | None = None
    max_length: Annotated[int | None, AsConfig(Lora, "max_length")] = None
    train_on_responses_only: Annotated[
        bool | None, AsConfig(Trainer, "train_on_responses_only")
    ] = None
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_INSPECT_ROWS)
    detail: WireInt = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _detail_is_a_row(self) -> Self:
        if self.detail >= len(self.rows):
            raise ValueError(
                f"detail = {self.detail} names no row: it is the 0-based index of one of the "
                f"{len(self.rows)} rows sent."
            )
        return self


class InspectedRow(WireModel):
    """One row: its tokens before truncation and how many of those the loss learns from.

    ``learned`` counts after truncation at ``max_length``; a row with ``learned = 0`` is
    left out of training. A row training would refuse carries ``error`` (and zero counts).
    """

    tokens: int = 0
    learned: int = 0
    truncated: bool = False
    error: str | None = None


class InspectedToken(WireModel):
    """One token of the detail row: its piece of the rendered text, and whether it is learned.

    The pieces concatenate to the rendered text; a special token the tokenizer adds (a
    BOS, the EOS appended to a row no template closes) shows as the token itself.
    """

    text: str
    learned: bool


class InspectedDetail(WireModel):
    """The ``detail`` row, token by token (tokens past ``max_length`` are never learned)."""

    index: int
    tokens: list[InspectedToken]


class DataInspection(WireModel):
    """``POST /v1/data/inspect``: the format used, the length cap, and each row's counts.

    ``detail`` is None when the detail row is one training would refuse (see its ``error``).
    """

    format: dict[str, str]
    max_length: int
    rows: list[InspectedRow]
    detail: InspectedDetail | None = None


class OrgMember(WireModel):
    """One member of an org: ``role`` is ``owner`` or ``member``; ``source`` is ``group``
    when the provider's groups claim makes them one (they leave with the group), else
    ``direct``."""

    user_id: str
    kind: str
    role: str
    source: str
    email: str | None = None
    name: str | None = None


class OrgInvitation(WireModel):
    """An invitation not yet taken up: the person whose verified email it names joins the
    org on their next request."""

    email: str
    invited_by: str
    created_at: str


class OrgMembers(WireModel):
    """``GET /v1/orgs/{slug}/members``: who belongs to the org, and who is invited."""

    org: Org
    members: list[OrgMember]
    invitations: list[OrgInvitation]


class InvitationCreate(StrictWireModel):
    """``POST /v1/orgs/{slug}/invitations``."""

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class InvitationEnvelope(WireModel):
    invitation: OrgInvitation
