"""What Studio's API does, apart from HTTP: a project and the plane session it talks through.

Everything about runs, chats and endpoints goes through the session's
:class:`~arkor.cloud.CloudApiClient`, as the CLI does, so Studio works the same against
the embedded plane, an ``arkor serve`` and a remote one. The project's files (configs,
the manifest, the data) are read from its folder, as ``arkor build`` reads them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from arkor.cloud import TERMINAL_JOB_STATUSES
from arkor.errors import ArkorError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from arkor.cloud import CloudApiClient, EvalCompleted, JobEvent, ProjectState, TrainingJob
    from arkor.config import LoadedConfig
    from arkor.evals import CustomMetric
    from arkor.sdk import AbortHandle, Session, Trainer

CONFIG_FOLDERS = ("configs",)
"""Folders of the project whose config files New run offers beside the root's."""
DATA_PAGE_LIMIT = 200
"""The most rows one page of the Data view holds."""
TOKEN_SAMPLE_ROWS = 2000
"""Rows measured for the tokens-per-row histogram (the first ones of the file)..."""
TOKEN_SAMPLE_BYTES = 512 * 1024
"""...or fewer, so the request stays well under the plane's 1 MiB body limit."""
HISTOGRAM_BINS = 20


class NotLocalDataError(ArkorError):
    """The project's dataset is not a file here (a Hub dataset, a URL): the Data view cannot browse it."""


@dataclass
class Follower:
    """A run started from Studio, followed in a thread that calls the project's callbacks."""

    trainer: Trainer
    thread: threading.Thread
    abort: AbortHandle


class Studio:
    """One project's view of its plane: runs, configs, chat targets, endpoints, data."""

    def __init__(self, root: Path, session: Session) -> None:
        self.root = root
        self.session = session
        self._followers: dict[str, Follower] = {}
        self._finished: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> CloudApiClient:
        return self.session.client

    @property
    def scope(self) -> ProjectState:
        return self.session.scope

    # --- the project ----------------------------------------------------------------

    def project(self) -> dict[str, Any]:
        from arkor._version import __version__

        loaded = self._loaded()
        dataset: dict[str, Any] | None = None
        model: str | None = None
        if loaded is not None:
            trainer = loaded.config.trainer
            model = trainer.model
            path = self._data_file(loaded)
            dataset = {
                "path": str(path.relative_to(self.root)) if path is not None else None,
                "description": _describe_dataset(trainer.dataset),
            }
        return {
            "name": self.root.name,
            "root": str(self.root),
            "plane": {
                "kind": self.session.kind,
                "url": self.session.url,
                "description": self.session.describe(),
            },
            "version": __version__,
            "configs": [name for name, _ in self.config_files()],
            "model": model,
            "dataset": dataset,
        }

    def config_files(self) -> list[tuple[str, Path]]:
        """The project's config files: the root's, then those under ``configs/``."""
        from arkor.config import CONFIG_FILENAMES, has_arkor_table

        found = [name for name in CONFIG_FILENAMES if (self.root / name).is_file()]
        pyproject = self.root / "pyproject.toml"
        if pyproject.is_file() and has_arkor_table(pyproject):
            found.append("pyproject.toml")
        for folder in CONFIG_FOLDERS:
            base = self.root / folder
            if base.is_dir():
                found += sorted(
                    str(path.relative_to(self.root))
                    for path in base.iterdir()
                    if path.suffix in (".toml", ".yaml", ".yml") and path.is_file()
                )
        return [(name, self.root / name) for name in dict.fromkeys(found)]

    def configs(self) -> dict[str, Any]:
        configs = []
        for name, path in self.config_files():
            kind = (
                "pyproject"
                if path.name == "pyproject.toml"
                else "toml"
                if path.suffix == ".toml"
                else "yaml"
            )
            configs.append({"name": name, "format": kind, "text": path.read_text(encoding="utf-8")})
        return {"configs": configs, "overrideKeys": override_keys()}

    def config_path(self, name: str | None) -> Path | None:
        """The config file ``name`` (one :meth:`config_files` lists), or None for the default."""
        if not name:
            return None
        for listed, path in self.config_files():
            if listed == name:
                return path
        raise UsageError(
            f"`{name}` is not one of this project's config files "
            f"({', '.join(n for n, _ in self.config_files()) or 'none found'})."
        )

    def validate(self, config: str | None, overrides: list[str]) -> dict[str, Any]:
        """``arkor validate``: ``valid`` and the trainer, or the located errors."""
        from arkor.config import ConfigError
        from arkor.manifest import validate_project

        try:
            loaded = validate_project(self.config_path(config), overrides, cwd=self.root)
        except ConfigError as error:
            return {"valid": False, "errors": error.issues_json()}
        trainer = loaded.config.trainer
        return {"valid": True, "trainer": {"name": trainer.name, "model": trainer.model}}

    def build(self, config: str | None, overrides: list[str]) -> dict[str, Any]:
        """``arkor build``: the manifest written, the pins that moved, those unresolved."""
        from arkor.manifest import build_project

        result = build_project(self.config_path(config), overrides, cwd=self.root)
        return {
            "manifest": str(result.path),
            "digest": result.manifest.digest,
            "moved": [move.describe() for move in result.moves],
            "unresolved": result.manifest.unresolved,
        }

    def start(self, config: str | None, overrides: list[str]) -> dict[str, Any]:
        """Build, then start the manifest as ``arkor start`` does, following it in a thread."""
        from arkor.sdk import AbortHandle, trainer_from_manifest

        built = self.build(config, overrides)
        trainer = trainer_from_manifest(Path(built["manifest"]))
        trainer.session = self.session  # Studio's: the trainer must not open (or close) its own
        job = trainer.start()
        abort = AbortHandle()
        thread = threading.Thread(
            target=_follow, args=(trainer, abort), name=f"studio-run-{job.id}", daemon=True
        )
        with self._lock:
            self._followers[job.id] = Follower(trainer, thread, abort)
        thread.start()
        return {"run": self.summary(job, [])}

    def close(self) -> None:
        """Stop following runs (on a plane that outlives Studio, they go on)."""
        with self._lock:
            followers = list(self._followers.values())
        for follower in followers:
            follower.abort.abort()
        for follower in followers:
            follower.thread.join(5)

    # --- runs -----------------------------------------------------------------------

    def runs(self) -> dict[str, Any]:
        client, scope = self.session.client, self.session.scope
        summaries = []
        for job in client.list_jobs(scope):
            cached = self._finished.get(job.id)
            if cached is not None:
                summaries.append(cached)
                continue
            events = client.get_job(scope, job.id).events or []
            summary = self.summary(job, events)
            if job.status in TERMINAL_JOB_STATUSES:
                self._finished[job.id] = summary
            summaries.append(summary)
        return {"runs": summaries}

    def run(self, job_id: str) -> dict[str, Any]:
        client, scope = self.session.client, self.session.scope
        envelope = client.get_job(scope, job_id)
        events = envelope.events or []
        artifacts = client.list_artifacts(scope, job_id)
        checkpoints = [
            {"step": event.step, "createdAt": event.timestamp}
            for event in events
            if event.type == "checkpoint.saved"
        ]
        return {
            "run": self.summary(envelope.job, events),
            "config": envelope.job.config.to_wire(),
            "events": [event.to_wire() for event in events],
            "lastEventId": len(events) or None,
            "checkpoints": checkpoints,
            "artifacts": [artifact.to_wire() for artifact in artifacts],
            "final": envelope.job.status == "completed",
        }

    def cancel(self, job_id: str) -> dict[str, Any]:
        client, scope = self.session.client, self.session.scope
        client.cancel_job(scope, job_id)
        envelope = client.get_job(scope, job_id)
        return {"run": self.summary(envelope.job, envelope.events or [])}

    @staticmethod
    def summary(job: TrainingJob, events: list[JobEvent]) -> dict[str, Any]:
        """A row of the Runs page: status, progress, timing, the last training loss."""
        step: int | None = None
        loss: float | None = None
        max_steps = job.config.max_steps
        for event in events:
            if event.type == "training.log":
                step = event.step
                loss = event.loss if event.loss is not None else loss
            elif event.type == "training.started" and max_steps is None and event.metadata:
                planned = event.metadata.get("maxSteps")
                max_steps = planned if isinstance(planned, int) and planned > 0 else None
        return {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "model": job.config.model,
            "step": step,
            "maxSteps": max_steps,
            "createdAt": job.created_at,
            "startedAt": job.started_at,
            "completedAt": job.completed_at,
            "durationSeconds": _duration(job),
            "finalLoss": loss,
            "error": job.error,
        }

    # --- evaluations ----------------------------------------------------------------

    def evals(self, job_id: str) -> dict[str, Any]:
        """The run's ``eval.completed`` events, each with the project's custom metrics added,
        its table and the samples where base and adapter answered differently."""
        envelope = self.client.get_job(self.scope, job_id)
        job = envelope.job
        custom, note = self._custom_metrics(job)
        found = [event for event in envelope.events or () if event.type == "eval.completed"]
        return {
            "evals": [describe_eval(event, custom) for event in found],
            "configured": job.config.eval is not None,
            "status": job.status,
            "metricsNote": note,
        }

    def evaluate(
        self,
        job_id: str,
        *,
        checkpoint: int | None,
        rows: int | None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Run a completed job's eval again on its plane (``arkor eval``), described as :meth:`evals`."""
        job = self.client.get_job(self.scope, job_id, include_events=False).job
        event = self.client.evaluate(
            self.scope, job_id, checkpoint=checkpoint, rows=rows, on_progress=on_progress
        )
        custom, _ = self._custom_metrics(job)
        return describe_eval(event, custom)

    def _custom_metrics(self, job: TrainingJob) -> tuple[dict[str, CustomMetric], str | None]:
        """The custom metrics the job's config names, from the project's build manifest.

        They are the user's code, so Studio (which has the project) runs them, as
        ``arkor eval`` does; those it cannot load are left out and the note says why.
        """
        import importlib

        from arkor.evals import is_builtin
        from arkor.manifest import manifest_path_for, project_root_of, read_manifest

        spec = job.config.eval
        wanted = [name for name in (spec.metrics if spec else []) if not is_builtin(name)]
        if not wanted:
            return {}, None
        load = getattr(importlib.import_module("arkor.sdk"), "load_custom_metrics", None)
        path = manifest_path_for(self.root)
        why = f"the project's build manifest ({path}) does not provide them"
        loaded: dict[str, CustomMetric] = {}
        try:
            if load is not None and path.is_file():
                loaded = load(read_manifest(path), project_root_of(path))
        except ArkorError as error:
            why = f"they could not be loaded: {error}"
        found = {target: loaded[target] for target in wanted if target in loaded}
        missing = [target for target in wanted if target not in found]
        if not missing:
            return found, None
        return found, (
            f"This run also measures {', '.join(missing)}, left out here because {why}. "
            "Run `arkor build` in the project to include them."
        )

    # --- the playground -------------------------------------------------------------

    def targets(self) -> dict[str, Any]:
        client, scope = self.session.client, self.session.scope
        loaded = self._loaded()
        runs = []
        for job in client.list_jobs(scope):
            if job.status not in ("completed", "running", "cancelled", "failed"):
                continue
            steps = self._checkpoint_steps(job)
            final = job.status == "completed"
            if final or steps:
                runs.append(
                    {
                        "id": job.id,
                        "name": job.name,
                        "model": job.config.model,
                        "status": job.status,
                        "final": final,
                        "checkpoints": steps,
                    }
                )
        endpoints = [{"slug": d.slug} for d in client.list_deployments(scope)]
        return {
            "baseModel": loaded.config.trainer.model if loaded is not None else None,
            "runs": runs,
            "endpoints": endpoints,
        }

    def _checkpoint_steps(self, job: TrainingJob) -> list[int]:
        """The steps a job saved checkpoints at (kept once the job is over: they cannot change)."""
        cached = self._steps.get(job.id)
        if cached is not None:
            return cached
        events = self.client.get_job(self.scope, job.id).events or []
        steps = [event.step for event in events if event.type == "checkpoint.saved"]
        if job.status in TERMINAL_JOB_STATUSES:
            self._steps[job.id] = steps
        return steps

    def system_prompt(self, job_id: str | None) -> str | None:
        """The system message the project's training rows share (for ``job_id``: its data's)."""
        from arkor.sdk import training_system_prompt

        job = None
        if job_id:
            session = self.session
            job = session.client.get_job(session.scope, job_id, include_events=False).job
        return training_system_prompt(self.root, job=job)

    # --- data -----------------------------------------------------------------------

    def data_rows(self, offset: int, limit: int) -> dict[str, Any]:
        """A page of the dataset file's rows, and how many it holds."""
        from arkor._formats import FILE_SUFFIXES, FormatError, detect_mapping, resolve_mapping

        loaded, path = self._local_data()
        file_format = FILE_SUFFIXES[path.suffix.lower()]
        rows: list[dict[str, Any]] = []
        count = 0
        first: Any = None
        try:
            for index, row in enumerate(_file_rows(path, file_format)):
                first = row if index == 0 else first
                if offset <= index < offset + limit:
                    rows.append({"index": index, "row": row})
                count += 1
        except FormatError as error:
            raise UsageError(
                f"Cannot read {path.relative_to(self.root)}: {error.message}"
            ) from None
        fmt = loaded.config.trainer.dataset_format
        mapping = resolve_mapping(
            fmt if isinstance(fmt, str) else fmt.model_dump(exclude_none=True)
        )
        if mapping is None and first is not None:
            try:
                mapping = detect_mapping(first)
            except FormatError:
                mapping = None
        return {
            "source": _describe_dataset(loaded.config.trainer.dataset),
            "path": str(path.relative_to(self.root)),
            "format": mapping,
            "count": count,
            "rows": rows,
            "offset": offset,
            "limit": limit,
        }

    def data_tokens(self, row: int) -> dict[str, Any]:
        """Tokens per row over the first rows, and which tokens of one row are learned."""
        from arkor._formats import FILE_SUFFIXES
        from arkor.cloud import DataInspectRequest

        loaded, path = self._local_data()
        file_format = FILE_SUFFIXES[path.suffix.lower()]
        sample: list[dict[str, Any]] = []
        chosen: dict[str, Any] | None = None
        count = size = 0
        sampling = True
        for index, item in enumerate(_file_rows(path, file_format)):
            if sampling:
                size += len(json.dumps(item, ensure_ascii=False).encode())
                sampling = index < TOKEN_SAMPLE_ROWS and (size <= TOKEN_SAMPLE_BYTES or not sample)
            if sampling:
                sample.append(item)
            if index == row:
                chosen = item
            count += 1
        if chosen is None:
            raise UsageError(f"Row {row} is past the end of the data ({count} rows).")
        measured_rows = len(sample)
        detail = row
        if row >= measured_rows:
            sample.append(chosen)
            detail = len(sample) - 1
        trainer = loaded.config.trainer
        pin = self._model_pin(trainer.model)
        fmt = trainer.dataset_format
        request = DataInspectRequest(
            model=trainer.model,
            model_pin=pin,
            dataset_format=fmt if isinstance(fmt, str) else fmt.model_dump(exclude_none=True),
            max_length=trainer.lora.max_length,
            train_on_responses_only=trainer.train_on_responses_only,
            rows=sample,
            detail=detail,
        )
        inspection = self.session.client.inspect_data(self.session.scope, request)
        measured = inspection.rows[:measured_rows]
        lengths = [item.tokens for item in measured if item.error is None]
        tokens = inspection.detail.tokens if inspection.detail is not None else []
        learned = sum(1 for token in tokens if token.learned)
        detail_row = inspection.rows[detail]
        return {
            "sampled": len(measured),
            "count": count,
            "maxLength": inspection.max_length,
            "histogram": histogram(lengths, HISTOGRAM_BINS),
            "stats": {
                **_stats(lengths),
                "truncated": sum(1 for item in measured if item.truncated),
                "noLearned": sum(
                    1 for item in measured if item.error is None and item.learned == 0
                ),
                "errors": sum(1 for item in measured if item.error is not None),
            },
            "row": {
                "index": row,
                "tokens": [token.to_wire() for token in tokens],
                "learned": learned,
                "total": len(tokens),
                "error": detail_row.error,
            },
        }

    def _model_pin(self, model: str) -> Any:
        """The model pin of the built manifest, when it names the same model."""
        from arkor.manifest import manifest_path_for, read_manifest

        try:
            manifest = read_manifest(manifest_path_for(self.root))
        except ArkorError:
            return None
        config = manifest.job.config
        return config.model_pin if config.model == model else None

    def _local_data(self) -> tuple[LoadedConfig, Path]:
        loaded = self._loaded(required=True)
        assert loaded is not None
        path = self._data_file(loaded)
        if path is None:
            raise NotLocalDataError(
                f"The Data view reads local files, and this project's dataset is "
                f"{_describe_dataset(loaded.config.trainer.dataset)}. Point trainer.dataset "
                'at a file (type = "file") to browse it here.'
            )
        if not path.is_file():
            raise UsageError(f"The dataset file {path} does not exist.")
        return loaded, path

    def _data_file(self, loaded: LoadedConfig) -> Path | None:
        from arkor._formats import FILE_SUFFIXES
        from arkor.config import FileDataset

        dataset = loaded.config.trainer.dataset
        if not isinstance(dataset, FileDataset):
            return None
        path = (loaded.path.parent / dataset.path).resolve()
        if FILE_SUFFIXES.get(path.suffix.lower()) in (None, "parquet"):
            return None
        return path

    def _loaded(self, *, required: bool = False) -> LoadedConfig | None:
        """The project's default config, loaded (None when it does not load, unless ``required``)."""
        from arkor.config import ConfigError, load_config

        try:
            return load_config(None, (), cwd=self.root)
        except ConfigError:
            if required:
                raise
            return None


def _follow(trainer: Trainer, abort: AbortHandle) -> None:
    """Call a run's callbacks as its events arrive, until it ends or Studio stops."""
    import logging

    from arkor.sdk import WaitAborted

    try:
        trainer.wait(abort=abort)
    except WaitAborted:
        pass
    except Exception:  # a callback's error ends only its run's following; the log says why
        logging.getLogger("arkor.studio").exception(
            "Following job %s stopped", trainer.job.id if trainer.job else "?"
        )


def describe_eval(event: EvalCompleted, custom: dict[str, CustomMetric]) -> dict[str, Any]:
    """An ``eval.completed`` event as the run page shows it: its wire form with custom
    metrics scored, the table (metric, base, adapter, change) and the indices of the
    samples where base and adapter answered differently.

    A custom metric that fails is left out and ``notes`` says why: the event stays readable.
    """
    from dataclasses import asdict

    from arkor.evals import table_rows, with_custom_metrics

    notes: list[str] = []
    for target, function in custom.items():
        try:
            event = with_custom_metrics(event, {target: function})
        except Exception as error:  # the user's code: its failure is shown, not raised
            notes.append(f"The custom metric {target} failed: {type(error).__name__}: {error}")
    differing = [
        index
        for index, sample in enumerate(event.samples)
        if sample.base is not None and sample.base.strip() != sample.adapter.strip()
    ]
    return {
        **event.to_wire(),
        "table": [asdict(row) for row in table_rows(event)],
        "differing": differing,
        "notes": notes,
    }


def override_keys() -> list[str]:
    """The dotted keys ``--set`` takes: every scalar field of the config models.

    A field that is one of several sections (the dataset kinds) offers the keys of each.
    """
    from typing import Annotated, get_args, get_origin

    from pydantic import BaseModel

    from arkor.config import ArkorConfig

    keys: list[str] = []

    def members(annotation: Any) -> list[Any]:
        """The types a field takes: a union's members, with ``Annotated`` and None set aside."""
        if get_origin(annotation) is Annotated:
            return members(get_args(annotation)[0])
        args = get_args(annotation)
        if args and get_origin(annotation) is not Literal and not _is_section(annotation):
            return [member for arg in args for member in members(arg)]
        return [] if annotation is type(None) else [annotation]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{field.alias or name}"
            kinds = members(field.annotation)
            if any(not _is_section(kind) for kind in kinds):
                keys.append(key)
            for kind in kinds:
                if _is_section(kind):
                    walk(kind, f"{key}.")

    walk(ArkorConfig, "")
    return list(dict.fromkeys(keys))


def _is_section(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def histogram(values: list[int], bins: int) -> list[dict[str, int]]:
    """Equal-width bins over ``values``: ``from`` inclusive, ``to`` exclusive (the last inclusive)."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = max(1, -(-(high - low + 1) // bins))
    counts = [0] * (-(-(high - low + 1) // width))
    for value in values:
        counts[(value - low) // width] += 1
    return [
        {"from": low + index * width, "to": low + (index + 1) * width, "rows": rows}
        for index, rows in enumerate(counts)
    ]


def _stats(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"min": None, "max": None, "mean": None, "p50": None, "p95": None}
    ordered = sorted(values)

    def percentile(fraction: float) -> int:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": percentile(0.5),
        "p95": percentile(0.95),
    }


def _file_rows(path: Path, file_format: str) -> Iterator[Any]:
    from arkor._formats import iter_file_rows

    for _, row in iter_file_rows(path, file_format):
        yield row


def _describe_dataset(dataset: Any) -> str:
    kind = getattr(dataset, "type", "")
    if kind == "file":
        return f"the file {dataset.path}"
    if kind == "huggingface":
        return f"the Hub dataset {dataset.name}"
    return "a dataset at a URL"


def _duration(job: TrainingJob) -> float | None:
    if job.started_at is None:
        return None
    start = _parse_time(job.started_at)
    end = _parse_time(job.completed_at) if job.completed_at else datetime.now(UTC)
    if start is None or end is None:
        return None
    return max(0.0, round((end - start).total_seconds(), 1))


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
