"""``create_trainer`` and ``Trainer``: one fine-tuning run driven from Python.

``start()`` submits the job once (idempotent; retried safely with one idempotency key),
uploading the local data (and eval) files first; ``wait()`` streams its events, scores
custom metrics on each eval, and calls the callbacks, each event once and in order,
``cancel()`` asks the plane to stop it. Each has an ``_async`` twin.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from arkor.cloud import (
    TERMINAL_EVENT_TYPES,
    AdapterRef,
    Artifact,
    BlobDatasetSource,
    ChatMessage,
    DatasetSource,
    FileDatasetSource,
    FollowStop,
    HuggingfaceDatasetSource,
    InferenceRequest,
    JobConfig,
    JobCreate,
    JobEvent,
    TrainingJob,
    follow_event_batches,
)
from arkor.config import (
    BlobDataset,
    ConfigError,
    ConfigIssue,
    FileDataset,
    Location,
    resolve_env,
)
from arkor.config import Trainer as TrainerSpec
from arkor.errors import ArkorError, UsageError
from arkor.evals import CustomMetric, is_builtin
from arkor.sdk._dispatch import Callback, Dispatcher, check_callback_names, score_custom_metrics
from arkor.sdk._session import Session, open_session


class WaitAborted(ArkorError):
    """``wait()`` was stopped through its abort handle; the job itself goes on."""


class AbortHandle(FollowStop):
    """Stops a ``wait()`` from another thread without cancelling the job.

    The wait ends at once, even while the stream is quiet: the open connection is cut.
    """

    def abort(self) -> None:
        self.set()

    @property
    def aborted(self) -> bool:
        return self.is_set()


@dataclass(frozen=True)
class TrainingResult:
    """How a job ended, as ``wait()`` saw it."""

    job: TrainingJob
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    error: str | None = None


class Trainer:
    """A fine-tuning run bound to a control plane. Make one with :func:`create_trainer`.

    Example::

        trainer = create_trainer(
            name="support-bot",
            model="HuggingFaceTB/SmolLM2-135M-Instruct",
            dataset={"type": "file", "path": "data/train.jsonl"},
            max_steps=60,
            callbacks={"on_log": lambda ctx: print(ctx.step, ctx.loss)},
        )
        job = trainer.start()
        result = trainer.wait()
        print(result.status, result.metrics)
    """

    def __init__(
        self,
        name: str,
        config: JobConfig,
        *,
        callbacks: Mapping[str, Callback] | None = None,
        dataset_file: Path | None = None,
        eval_file: Path | None = None,
        custom_metrics: Mapping[str, CustomMetric] | None = None,
        cloud_url: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        check_callback_names(callbacks or {})
        self.name = name
        self.config = config
        self.callbacks = dict(callbacks or {})
        self.dataset_file = dataset_file
        self.eval_file = eval_file
        """The local file of ``trainer.eval.path``, uploaded by :meth:`start`."""
        self.custom_metrics = dict(custom_metrics or {})
        """Custom metrics by dotted path: scored here on every ``eval.completed``."""
        self.cloud_url = cloud_url
        self.cwd = cwd or Path.cwd()
        self.session: Session | None = None
        self.job: TrainingJob | None = None
        self._idempotency_key = str(uuid.uuid4())
        self._last_event_id: int | None = None
        self._lock = threading.Lock()

    # --- start --------------------------------------------------------------------------

    def start(self) -> TrainingJob:
        """Submit the job (once: later calls return the same job)."""
        with self._lock:
            if self.job is not None:
                return self.job
            session = self.connect()
            config = self._resolved_config(session)
            self.job = session.client.create_job(
                session.scope,
                JobCreate(name=self.name, config=config),
                idempotency_key=self._idempotency_key,
            )
            return self.job

    def connect(self) -> Session:
        """The plane session this trainer uses, opened on first need."""
        if self.session is None:
            self.session = open_session(cloud_url=self.cloud_url, cwd=self.cwd)
        return self.session

    def _resolved_config(self, session: Session) -> JobConfig:
        """Fill in what only the plane or the environment can: the upload ids, the secrets."""
        source = self.config.dataset_source
        if isinstance(source, FileDatasetSource):
            if self.dataset_file is None:
                raise UsageError("A file dataset needs its local path to upload.")
            upload = session.client.upload(
                session.scope, self.dataset_file.read_bytes(), filename=self.dataset_file.name
            )
            source = source.model_copy(update={"upload_id": upload.id})
        elif isinstance(source, BlobDatasetSource):
            source = source.model_copy(
                update={
                    "url": resolve_env(source.url, "trainer.dataset.url"),
                    "token": resolve_env(source.token, "trainer.dataset.token")
                    if source.token
                    else None,
                }
            )
        evaluation = self.config.eval
        if evaluation is not None and evaluation.source is not None:
            if self.eval_file is None:
                raise UsageError("An eval file (trainer.eval.path) needs its local path to upload.")
            upload = session.client.upload(
                session.scope, self.eval_file.read_bytes(), filename=self.eval_file.name
            )
            evaluation = evaluation.model_copy(
                update={"source": evaluation.source.model_copy(update={"upload_id": upload.id})}
            )
        return self.config.model_copy(update={"dataset_source": source, "eval": evaluation})

    # --- wait ---------------------------------------------------------------------------

    def wait(
        self,
        *,
        abort: AbortHandle | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
        after_callbacks: Callable[[JobEvent], None] | None = None,
    ) -> TrainingResult:
        """Follow the job's events to its end, calling the callbacks; return how it ended.

        A callback that raises stops the wait at once with :class:`CallbackError`, and so
        does a custom metric (:class:`MetricError`, a kind of it): both are the user's code.
        ``on_event``, the callbacks and ``after_callbacks`` all see an ``eval.completed``
        with the custom metrics already scored.
        ``abort.abort()`` (from another thread) stops the wait with :class:`WaitAborted`
        and leaves the job running. ``on_event`` sees every event before the callbacks and
        ``after_callbacks`` after them (the CLI draws its progress bar around their output).
        """
        job = self.start()
        dispatcher = self._dispatcher()
        terminal: JobEvent | None = None
        for batch in self._batches(abort):
            for delivered in batch:
                self._delivering(delivered, abort)
                event = score_custom_metrics(delivered, self.custom_metrics)
                if on_event is not None:
                    on_event(event)
                dispatcher.dispatch(event)
                if after_callbacks is not None:
                    after_callbacks(event)
                terminal = event if event.type in TERMINAL_EVENT_TYPES else terminal
        return self._result(job, terminal)

    def _batches(self, abort: AbortHandle | None) -> Iterator[list[JobEvent]]:
        """The job's new events, a list per chunk read, followed on the calling thread.

        Ctrl-C interrupts the read where it blocks; ``abort`` cuts the connection.
        """
        session, job = self.connect(), self.job
        assert job is not None
        yield from follow_event_batches(
            session.client, session.scope, job.id, last_event_id=self._last_event_id, stop=abort
        )
        if abort is not None and abort.aborted:
            raise WaitAborted(f"Stopped waiting for job {job.id}; it goes on on the plane.")

    def _delivering(self, event: JobEvent, abort: AbortHandle | None) -> None:
        """Count ``event`` as delivered, unless the wait was aborted before it."""
        if abort is not None and abort.aborted:
            raise WaitAborted(f"Stopped waiting for job {event.job_id}; it goes on on the plane.")
        self._last_event_id = (self._last_event_id or 0) + 1  # a job's ids run 1, 2, 3, …

    def _dispatcher(self) -> Dispatcher:
        session = self.connect()

        def current_job() -> TrainingJob:
            assert self.job is not None
            return self.job

        def infer_at(step: int) -> Callable[..., Any]:
            def infer(
                messages: list[dict[str, str]], *, stream: bool = False, **options: Any
            ) -> Any:
                assert self.job is not None
                request = InferenceRequest(
                    messages=[ChatMessage(**message) for message in messages],
                    adapter=AdapterRef(kind="checkpoint", job_id=self.job.id, step=step),
                    stream=stream,
                    **{key: value for key, value in options.items() if value is not None},
                )
                return session.client.chat(session.scope, request)

            return infer

        return Dispatcher(self.callbacks, current_job, infer_at)

    def _result(self, job: TrainingJob, terminal: JobEvent | None) -> TrainingResult:
        session = self.connect()
        self.job = session.client.get_job(session.scope, job.id, include_events=False).job
        if terminal is None:
            return TrainingResult(self.job, self.job.status, error=self.job.error)
        if terminal.type == "training.completed":
            return TrainingResult(
                self.job, "completed", dict(terminal.metrics or {}), list(terminal.artifacts or [])
            )
        if terminal.type == "training.failed":
            return TrainingResult(self.job, "failed", error=terminal.error)
        return TrainingResult(self.job, "cancelled", error="cancelled")

    # --- cancel and clean up ------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the plane to stop the job; it ends ``cancelled`` within a training step."""
        if self.job is None:
            raise UsageError("This trainer has not started a job yet; nothing to cancel.")
        session = self.connect()
        session.client.cancel_job(session.scope, self.job.id)

    def close(self) -> None:
        """Release the plane session (and stop an embedded plane)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    # --- async twins --------------------------------------------------------------------

    async def start_async(self) -> TrainingJob:
        return await asyncio.to_thread(self.start)

    async def wait_async(
        self,
        *,
        abort: AbortHandle | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> TrainingResult:
        """Like :meth:`wait`; coroutine callbacks are awaited on the running loop.

        Cancelling the awaiting task stops the wait too (and sets ``abort``, if given).
        """
        job = await self.start_async()
        dispatcher = self._dispatcher()
        stop = abort or AbortHandle()  # a cancelled task must not leave a thread reading
        batches = self._batches(stop)
        terminal: JobEvent | None = None
        try:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                for delivered in batch:
                    self._delivering(delivered, stop)
                    event = score_custom_metrics(delivered, self.custom_metrics)
                    if on_event is not None:
                        on_event(event)
                    await dispatcher.dispatch_async(event)
                    terminal = event if event.type in TERMINAL_EVENT_TYPES else terminal
        except asyncio.CancelledError:
            stop.set()
            raise
        return await asyncio.to_thread(self._result, job, terminal)

    async def cancel_async(self) -> None:
        await asyncio.to_thread(self.cancel)


def create_trainer(
    *,
    callbacks: Mapping[str, Callback] | None = None,
    cloud_url: str | None = None,
    cwd: Path | None = None,
    **settings: Any,
) -> Trainer:
    """Describe a run with the same keys as ``[trainer]`` in ``arkor.toml``, callbacks as callables.

    Example::

        trainer = create_trainer(
            name="support-bot-v1",
            model="HuggingFaceTB/SmolLM2-135M-Instruct",
            dataset={"type": "huggingface", "name": "arkorlab/triage-demo"},
            lora={"r": 16, "alpha": 16},
            max_steps=100,
            callbacks={"on_checkpoint": on_checkpoint},
        )

    ``eval={...}`` takes ``[trainer.eval]``'s keys; its ``path`` and its custom metrics'
    modules are found from ``cwd``.
    """
    from arkor._fs import sha256_file
    from arkor.manifest import inspect_dataset, job_config_for, load_callback
    from arkor.manifest._dataset import DatasetReport
    from arkor.manifest._eval import eval_spec_for

    cwd = cwd or Path.cwd()
    try:
        spec = TrainerSpec.model_validate(settings)
    except ValidationError as error:
        raise ConfigError(
            [
                ConfigIssue(
                    item["msg"], Location("create_trainer()"), tuple(str(p) for p in item["loc"])
                )
                for item in error.errors()
            ]
        ) from None
    dataset_file: Path | None = None
    report: DatasetReport | None = None
    source: DatasetSource
    if isinstance(spec.dataset, FileDataset):
        dataset_file = (cwd / spec.dataset.path).resolve()
        if not dataset_file.is_file():
            raise ConfigError(
                [
                    ConfigIssue(
                        f"the dataset file {dataset_file} does not exist.",
                        Location("create_trainer()"),
                        ("dataset", "path"),
                    )
                ]
            )
        report = inspect_dataset(dataset_file, spec.dataset.path, _format_of(spec))
        source = FileDatasetSource(path=spec.dataset.path, sha256=sha256_file(dataset_file)[0])
    elif isinstance(spec.dataset, BlobDataset):
        source = BlobDatasetSource(url=spec.dataset.url, token=spec.dataset.token)
    else:
        source = HuggingfaceDatasetSource(
            name=spec.dataset.name, split=spec.dataset.split, subset=spec.dataset.subset
        )
    eval_file: Path | None = None
    eval_source: FileDatasetSource | None = None
    custom: dict[str, CustomMetric] = {}
    if spec.eval is not None:
        if spec.eval.path is not None:
            eval_file = (cwd / spec.eval.path).resolve()
            if not eval_file.is_file():
                raise ConfigError(
                    [
                        ConfigIssue(
                            f"the eval file {eval_file} does not exist.",
                            Location("create_trainer()"),
                            ("eval", "path"),
                        )
                    ]
                )
            inspect_dataset(eval_file, spec.eval.path, _format_of(spec))
            eval_source = FileDatasetSource(path=spec.eval.path, sha256=sha256_file(eval_file)[0])
        custom = {
            name: load_callback(name, cwd) for name in spec.eval.metrics if not is_builtin(name)
        }
    config = job_config_for(spec, source, report, eval_spec_for(spec, eval_source, None))
    return Trainer(
        spec.name,
        config,
        callbacks=callbacks,
        dataset_file=dataset_file,
        eval_file=eval_file,
        custom_metrics=custom,
        cloud_url=cloud_url,
        cwd=cwd,
    )


def _format_of(spec: TrainerSpec) -> str | dict[str, str]:
    value = spec.dataset_format
    return value if isinstance(value, str) else value.model_dump()
