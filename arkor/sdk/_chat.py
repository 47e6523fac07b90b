"""Chat with what a project trained: a job's adapter (final or a checkpoint), or a base model.

A :class:`ChatTarget` says what answers and how to stream an answer from it; a new kind
of target (a deployment, say) is one more subclass, and everything above it (the
conversation, the CLI) stays as it is. A :class:`Chat` keeps the turns of one
conversation and streams each answer as a :class:`Reply`.

:func:`shared_system_prompt` finds the system message a dataset's chat rows all share:
a model fine-tuned on them learned to answer under it, so asking with it shows what was
learned (``arkor chat`` and the templates' ``on_checkpoint`` do).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arkor._formats import (
    FILE_SUFFIXES,
    FormatError,
    detect_mapping,
    iter_file_rows,
    messages_in,
    resolve_mapping,
)
from arkor.errors import ArkorError, UsageError

if TYPE_CHECKING:
    import httpx

    from arkor.cloud import ChatCompletionChunk, CompletionUsage, InferenceRequest, TrainingJob
    from arkor.sdk._session import Session

NO_COMPLETED_JOB = (
    "No completed job yet; train one with `arkor start`, or chat with a base model with "
    "`arkor chat --base MODEL`."
)


@dataclass(frozen=True)
class ChatOptions:
    """How answers are generated; None leaves a setting to the plane's default."""

    temperature: float | None = None
    max_tokens: int | None = None


class ChatTarget(ABC):
    """What answers a chat, and how to stream an answer from it."""

    @abstractmethod
    def describe(self) -> str:
        """A few words for the CLI: what answers."""

    @abstractmethod
    def stream(
        self, session: Session, messages: list[dict[str, str]], options: ChatOptions
    ) -> AbstractContextManager[Iterator[ChatCompletionChunk]]:
        """Ask ``messages``; yield the answer's chunks as they arrive. Leaving closes the stream."""

    @property
    def job(self) -> TrainingJob | None:
        """The training job behind this target, if there is one (its data may hold a system prompt)."""
        return None


class _PlaneTarget(ChatTarget):
    """A target the plane's own inference route answers (``POST /v1/inference/chat``)."""

    @abstractmethod
    def _fields(self) -> dict[str, Any]:
        """What the request names as the answering model: ``adapter`` or ``base_model``."""

    @contextmanager
    def stream(
        self, session: Session, messages: list[dict[str, str]], options: ChatOptions
    ) -> Iterator[Iterator[ChatCompletionChunk]]:
        with session.client.stream_chat(session.scope, self._request(messages, options)) as answer:
            yield _chunks(answer, self.describe())

    def _request(self, messages: list[dict[str, str]], options: ChatOptions) -> InferenceRequest:
        from arkor.cloud import ChatMessage, InferenceRequest

        settings = {"temperature": options.temperature, "max_tokens": options.max_tokens}
        return InferenceRequest(
            messages=[ChatMessage(**message) for message in messages],
            stream=True,
            **self._fields(),
            **{key: value for key, value in settings.items() if value is not None},
        )


class JobTarget(_PlaneTarget):
    """A job's final adapter, or one of its checkpoints (``step``)."""

    def __init__(self, job: TrainingJob, step: int | None = None) -> None:
        self._job = job
        self.step = step

    @property
    def job(self) -> TrainingJob:
        return self._job

    def describe(self) -> str:
        what = f"checkpoint {self.step}" if self.step is not None else "the final adapter"
        return f"{what} of job {self._job.id} ({self._job.name}, on {self._job.config.model})"

    def _fields(self) -> dict[str, Any]:
        from arkor.cloud import AdapterRef

        kind = "final" if self.step is None else "checkpoint"
        return {"adapter": AdapterRef(kind=kind, job_id=self._job.id, step=self.step)}


class BaseModelTarget(_PlaneTarget):
    """A bare base model, no adapter: a Hub id, a model store name, a folder or a ``.gguf``."""

    def __init__(self, model: str) -> None:
        self.model = model

    def describe(self) -> str:
        return f"the base model {self.model}"

    def _fields(self) -> dict[str, Any]:
        return {"base_model": self.model}


def resolve_target(
    session: Session,
    *,
    job_id: str | None = None,
    step: int | None = None,
    base_model: str | None = None,
    endpoint: str | None = None,
) -> ChatTarget:
    """What to chat with: ``endpoint``'s model, ``base_model``, job ``job_id``, else the newest job.

    ``step`` picks a checkpoint of the job instead of its final adapter. An endpoint
    (deployment) is chatted with as what it serves now, through the project's plane.
    """
    from arkor.cloud import NotFoundError

    check_target_choice(job_id=job_id, step=step, base_model=base_model, endpoint=endpoint)
    if endpoint is not None:
        return _endpoint_target(session, endpoint)
    if base_model is not None:
        return BaseModelTarget(base_model)
    if job_id is None:
        newest = session.newest_completed_job()
        if newest is None:
            raise UsageError(NO_COMPLETED_JOB)
        return JobTarget(newest, step)
    try:
        job = session.client.get_job(session.scope, job_id, include_events=False).job
    except NotFoundError:
        raise UsageError(
            f"This project has no job `{job_id}` on the {session.describe()}. "
            "`arkor jobs list` shows its jobs."
        ) from None
    return JobTarget(job, step)


def check_target_choice(
    *,
    job_id: str | None = None,
    step: int | None = None,
    base_model: str | None = None,
    endpoint: str | None = None,
) -> None:
    """Refuse two targets at once (before anything connects)."""
    if endpoint is not None and (base_model is not None or job_id is not None or step is not None):
        raise UsageError(
            "--endpoint chats with what an endpoint serves; --base, --job and --checkpoint "
            "pick a model themselves: give one or the other."
        )
    if base_model is not None and (job_id is not None or step is not None):
        raise UsageError(
            "--base chats with a bare base model, and --job / --checkpoint pick a trained "
            "adapter: give one or the other."
        )


def _endpoint_target(session: Session, endpoint: str) -> ChatTarget:
    """The model an endpoint of this project serves: a job's adapter, or a base model."""
    from arkor.cloud import AdapterTarget, NotFoundError

    try:
        deployment = session.client.get_deployment(session.scope, endpoint)
    except NotFoundError:
        raise UsageError(
            f"This project has no endpoint `{endpoint}` on the {session.describe()}. "
            "`arkor endpoints list` shows its endpoints."
        ) from None
    target = deployment.target
    if isinstance(target, AdapterTarget):
        job = session.client.get_job(session.scope, target.adapter.job_id, include_events=False)
        step = target.adapter.step if target.adapter.kind == "checkpoint" else None
        return JobTarget(job.job, step)
    return BaseModelTarget(target.base_model)


class Reply:
    """One answer as it streams: iterate it for the text as it arrives.

    ``text`` holds what arrived so far, and once the chunks carry them, the ``model`` that
    answered, the ``usage`` and the ``finish_reason`` (``"length"``: cut at ``max_tokens``).
    """

    def __init__(self, chunks: Iterator[ChatCompletionChunk]) -> None:
        self._chunks = chunks
        self.text = ""
        self.model: str | None = None
        self.usage: CompletionUsage | None = None
        self.finish_reason: str | None = None

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self.model = chunk.model
            if chunk.usage is not None:
                self.usage = chunk.usage
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    self.finish_reason = choice.finish_reason
                if choice.delta.content:
                    self.text += choice.delta.content
                    yield choice.delta.content

    def read(self) -> str:
        """The whole answer, once it has streamed."""
        for _ in self:
            pass
        return self.text


class Chat:
    """A conversation with one target: its turns so far, kept as the context of the next answer.

    ::

        chat = Chat(session, resolve_target(session), system="Answer briefly.")
        with chat.ask("What is 2 + 2?") as reply:
            for text in reply:
                print(text, end="", flush=True)
    """

    def __init__(
        self,
        session: Session,
        target: ChatTarget,
        *,
        system: str | None = None,
        options: ChatOptions | None = None,
    ) -> None:
        self.session = session
        self.target = target
        self.system = system
        self.options = options or ChatOptions()
        self.turns: list[dict[str, str]] = []

    def reset(self) -> None:
        """Forget the turns (the system prompt stays)."""
        self.turns.clear()

    @contextmanager
    def ask(self, text: str) -> Iterator[Reply]:
        """Stream the answer to ``text``; leaving the block closes the stream.

        The exchange joins the conversation with as much of the answer as arrived, so an
        answer stopped half-way (Ctrl-C) stays what the model saw it say.
        """
        question = {"role": "user", "content": text}
        system = [{"role": "system", "content": self.system}] if self.system else []
        messages = [*system, *self.turns, question]
        with self.target.stream(self.session, messages, self.options) as chunks:
            reply = Reply(chunks)
            try:
                yield reply
            finally:
                if reply.text:
                    self.turns += [question, {"role": "assistant", "content": reply.text}]


def shared_system_prompt(
    path: str | Path, dataset_format: str | Mapping[str, str] | None = None
) -> str | None:
    """The system message every chat row of a dataset file opens with, or None.

    None when a row has no system message, rows differ, the rows are not chat rows
    (``prompt``/``completion`` or ``text``), or the file cannot be read. Rows are read as
    the engine reads them (JSONL, JSON, CSV; Parquet gives None), through
    ``dataset_format``: a format name or a column mapping, as ``trainer.dataset_format``
    takes it; None or ``"auto"`` tells the format from the first row.
    """
    path = Path(path)
    file_format = FILE_SUFFIXES.get(path.suffix.lower())
    if file_format is None or file_format == "parquet":
        return None
    shared: str | None = None
    try:
        mapping = resolve_mapping(dataset_format)
        for _, row in iter_file_rows(path, file_format):
            mapping = mapping or detect_mapping(row)
            if mapping["type"] != "chat":
                return None
            prompt = _system_message(row, mapping["messages"])
            if prompt is None or (shared is not None and prompt != shared):
                return None
            shared = prompt
    except (FormatError, OSError, ValueError):
        return None
    return shared


def training_system_prompt(
    project: str | Path | None = None, *, job: TrainingJob | None = None
) -> str | None:
    """The :func:`shared_system_prompt` of a project's training data, or None.

    The data is the file the project's manifest (``.arkor/build/manifest.json`` under
    ``project``, default the current folder) names, read with its ``dataset_format``.
    With ``job``, only when that job trained on this file as it is now (same sha256): a
    prompt from data edited since would not be the one it learned.
    """
    from arkor._fs import sha256_file
    from arkor.cloud import FileDatasetSource
    from arkor.manifest import manifest_path_for, project_root_of, read_manifest

    manifest_path = manifest_path_for(Path(project) if project is not None else Path.cwd())
    try:
        manifest = read_manifest(manifest_path)
    except ArkorError:
        return None
    if manifest.dataset.type != "file" or manifest.dataset.path is None:
        return None
    path = project_root_of(manifest_path) / manifest.dataset.path
    if job is not None:
        source = job.config.dataset_source
        try:
            digest = sha256_file(path)[0]
        except OSError:
            return None
        if not isinstance(source, FileDatasetSource) or source.sha256 != digest:
            return None
    return shared_system_prompt(path, manifest.job.config.dataset_format)


def _system_message(row: Any, column: str) -> str | None:
    """The text of the system message a chat row opens with, if it opens with one."""
    if not isinstance(row, dict):
        return None
    messages = messages_in(row, column)
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    first = messages[0]
    content = first.get("content")
    return content if first.get("role") == "system" and isinstance(content, str) else None


def _chunks(answer: httpx.Response, what: str) -> Iterator[ChatCompletionChunk]:
    """The ``chat.completion.chunk`` frames of a streamed answer, up to ``data: [DONE]``."""
    from arkor.cloud import ChatCompletionChunk, iter_frames

    for frame in iter_frames(answer.iter_text()):
        if frame.data == "[DONE]":
            return
        if not frame.data:
            continue
        try:
            chunk = ChatCompletionChunk.model_validate_json(frame.data)
        except ValueError:
            raise ArkorError(
                f"The answer of {what} holds a frame that is not a chat.completion.chunk: "
                f"{frame.data[:200]}"
            ) from None
        yield chunk
    raise ArkorError(
        f"The answer of {what} stopped before it was complete (the stream ended without its "
        "final `[DONE]`); the plane's log may say why. Ask again."
    )
