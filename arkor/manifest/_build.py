"""Freeze a config into ``.arkor/build/manifest.json``.

Validate, resolve (callbacks and custom metrics imported and digested, a local dataset
and eval file checked and digested, held-out rows listed by hash, defaults filled, the model, data and stack pinned: see ``_lock``), then write
the manifest atomically. A failed build raises before anything is written, so the
previous manifest stays as it was; with ``locked`` nothing is ever written, and a
manifest that would change is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from arkor._fs import atomic_write_text, sha256_file
from arkor._version import __version__
from arkor.cloud import (
    BlobDatasetSource,
    DatasetSource,
    EvalSpec,
    FileDatasetSource,
    HuggingfaceDatasetSource,
    JobConfig,
    JobCreate,
    ResourcesSpec,
)
from arkor.config import (
    SECRET_FIELDS,
    BlobDataset,
    ConfigError,
    FileDataset,
    LoadedConfig,
    Trainer,
    format_key_path,
    load_config,
)
from arkor.errors import ManifestError
from arkor.manifest._callbacks import (
    ResolvedCallback,
    callback_targets,
    metric_targets,
    resolve_targets,
)
from arkor.manifest._check import dataset_file, dataset_file_issue
from arkor.manifest._dataset import DatasetReport, default_mapping, inspect_dataset
from arkor.manifest._eval import eval_entry, eval_spec_for, freeze_eval
from arkor.manifest._lock import Change, manifest_changes, pin_moves, resolve_pins, upgrade_targets
from arkor.manifest._manifest import (
    MANIFEST_VERSION,
    Manifest,
    ManifestCallback,
    ManifestDataset,
    ManifestSecret,
    ManifestSource,
    canonical_json,
    compute_digest,
    manifest_path_for,
    read_manifest,
)

_ENV_NAME = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class BuildResult:
    """A written manifest, where it is, and the config it froze."""

    path: Path
    manifest: Manifest
    loaded: LoadedConfig
    changed: bool
    """False when the manifest on disk already had these exact bytes."""
    moves: list[Change] = field(default_factory=list)
    """The pins that moved since the previous manifest (``old → new``)."""


def build(
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    upgrade: Iterable[str] = (),
    locked: bool = False,
) -> Path:
    """Validate and freeze the config; return the path of the manifest written.

    >>> import arkor
    >>> arkor.build("arkor.toml", ["trainer.max_steps=10"])   # doctest: +SKIP
    PosixPath('/project/.arkor/build/manifest.json')
    """
    return build_project(config, overrides, cwd=cwd, env=env, upgrade=upgrade, locked=locked).path


def build_project(
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    upgrade: Iterable[str] = (),
    locked: bool = False,
) -> BuildResult:
    """Like :func:`build`, returning the manifest, the loaded config and the pins that moved.

    ``upgrade`` names the pins to resolve again (``model``, ``data``); others are kept
    while the config names the same thing. ``locked`` writes nothing, and raises a
    :class:`ManifestError` when the manifest would change or a pin is unresolved.
    """
    targets = upgrade_targets(upgrade)
    loaded = load_config(config, overrides, cwd=cwd, env=env)
    path = manifest_path_for(loaded.root)
    previous = _previous(path)
    manifest = freeze(loaded, previous, targets)
    text = canonical_json({**manifest.body(), "digest": manifest.digest})
    old_text = path.read_text(encoding="utf-8") if path.is_file() else None
    changed = old_text != text
    old_body = previous.body() if previous is not None else None
    moves = pin_moves(old_body, manifest.body())
    if locked:
        _check_locked(path, manifest, old_body if changed else manifest.body())
    elif changed:
        atomic_write_text(path, text)
    return BuildResult(path, manifest, loaded, changed, moves)


def _previous(path: Path) -> Manifest | None:
    """The manifest a rebuild keeps pins from: the one on disk, if it reads as valid."""
    if not path.is_file():
        return None
    try:
        return read_manifest(path)
    except ManifestError:
        return None


def _check_locked(path: Path, manifest: Manifest, old_body: dict[str, object] | None) -> None:
    """``--locked``: refuse a manifest that would change, or that leaves a pin unresolved."""
    if old_body is None and not path.is_file():
        raise ManifestError(
            f"There is no manifest at {path}, and --locked forbids writing one. Run "
            "`arkor build` and commit the manifest."
        )
    changes = manifest_changes(old_body, manifest.body()) if old_body is not None else []
    if old_body is None or changes:
        listed = "; ".join(change.describe() for change in changes[:5]) or "it is unreadable"
        more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
        raise ManifestError(
            f"The manifest {path} would change ({listed}{more}), and --locked forbids writing "
            "it. Run `arkor build` (or `arkor build --upgrade`) and commit the manifest."
        )
    if manifest.unresolved:
        raise ManifestError(
            f"The manifest {path} leaves pins unresolved ({'; '.join(manifest.unresolved)}), "
            "and --locked needs every pin resolved. Run `arkor build` where the model, the data "
            "and the engine extra are all reachable, and commit the manifest."
        )


def freeze(
    loaded: LoadedConfig,
    previous: Manifest | None = None,
    upgrade: frozenset[str] = frozenset(),
) -> Manifest:
    """Resolve everything a run needs into a :class:`Manifest` (nothing is written).

    Pins come from ``previous`` where the config still names the same model and data,
    except those named in ``upgrade``.
    """
    trainer = loaded.config.trainer
    callback_code, metric_code = callback_targets(trainer.callbacks), metric_targets(trainer.eval)
    code = resolve_targets([*callback_code, *metric_code], loaded.raw)
    callbacks = {str(target.key[-1]): code[target.key] for target in callback_code}
    metrics = [code[target.key] for target in metric_code]
    dataset, dataset_entry, report = _freeze_dataset(loaded)
    frozen_eval = freeze_eval(
        loaded,
        lambda path: _relative(path, loaded.root),
        dataset_file(loaded, trainer.dataset) if isinstance(trainer.dataset, FileDataset) else None,
        report,
    )
    pins = resolve_pins(loaded, dataset, previous, upgrade)
    evaluation = eval_spec_for(
        trainer,
        frozen_eval.source if frozen_eval is not None else None,
        frozen_eval.held_out.rows_digest
        if frozen_eval is not None and frozen_eval.held_out is not None
        else None,
    )
    config = job_config_for(trainer, pins.dataset_source, report, evaluation).model_copy(
        update={"model_pin": pins.model_pin, "build_stack": pins.build_stack}
    )
    job = JobCreate(name=trainer.name, config=config)
    body = Manifest(
        manifest_version=MANIFEST_VERSION,
        arkor_version=__version__,
        job=job,
        callbacks={event: _callback_entry(cb, loaded.root) for event, cb in callbacks.items()},
        dataset=dataset_entry,
        eval=eval_entry(
            list(dict.fromkeys(_callback_entry(metric, loaded.root) for metric in metrics)),
            frozen_eval,
        ),
        sources=[
            ManifestSource(
                path=_relative(source.path, loaded.root), role=source.role, sha256=source.sha256
            )
            for source in loaded.sources
        ],
        secrets=_secrets(loaded),
        overrides=list(loaded.overrides),
        cloud_url=loaded.config.cloud.url,
        unresolved=pins.unresolved,
        digest="",
    )
    return body.model_copy(update={"digest": compute_digest(body.body())})


def _freeze_dataset(
    loaded: LoadedConfig,
) -> tuple[DatasetSource, ManifestDataset, DatasetReport | None]:
    """The wire dataset source, its manifest entry, and (for a local file) what checking found."""
    dataset = loaded.config.trainer.dataset
    if isinstance(dataset, FileDataset):
        problem = dataset_file_issue(loaded)
        if problem is not None:
            raise ConfigError([problem])
        file = dataset_file(loaded, dataset)
        relative = _relative(file, loaded.root)
        report = inspect_dataset(file, relative, _format_setting(loaded.config.trainer))
        digest, size = sha256_file(file)
        entry = ManifestDataset(
            type="file",
            path=relative,
            sha256=digest,
            size=size,
            rows=report.rows,
            file_format=report.file_format,
        )
        return FileDatasetSource(path=relative, sha256=digest), entry, report
    if isinstance(dataset, BlobDataset):
        return (
            BlobDatasetSource(url=dataset.url, token=dataset.token),
            ManifestDataset(type="blob", url=dataset.url),
            None,
        )
    source = HuggingfaceDatasetSource(name=dataset.name, split=dataset.split, subset=dataset.subset)
    return source, ManifestDataset(type="huggingface", name=dataset.name), None


def _format_setting(trainer: Trainer) -> str | dict[str, str]:
    value = trainer.dataset_format
    return value if isinstance(value, str) else value.model_dump()


def job_config_for(
    trainer: Trainer,
    dataset: DatasetSource,
    report: DatasetReport | None,
    evaluation: EvalSpec | None = None,
) -> JobConfig:
    """The wire job config for ``trainer``, every default filled (what a manifest freezes).

    ``report`` (from checking a local file) supplies the detected row format;
    ``evaluation`` is ``trainer.eval`` as build resolved it (its file's digest, the
    held-out rows' digest), else it is filled from ``trainer.eval`` alone.
    """
    fmt = report.format if report is not None else _format_setting(trainer)
    if isinstance(fmt, str) and fmt != "auto":
        fmt = default_mapping(fmt)
    lora = trainer.lora
    return JobConfig(
        model=trainer.model,
        dataset_source=dataset,
        dataset_format=fmt,
        dataset_split=trainer.dataset_split,
        max_steps=trainer.max_steps,
        num_train_epochs=trainer.num_train_epochs,
        learning_rate=trainer.learning_rate,
        batch_size=trainer.batch_size,
        optim=trainer.optim,
        lr_scheduler_type=trainer.lr_scheduler_type,
        weight_decay=trainer.weight_decay,
        warmup_steps=trainer.warmup_steps,
        logging_steps=trainer.logging_steps,
        save_steps=trainer.save_steps,
        eval_steps=trainer.eval_steps if trainer.eval_steps is not None else trainer.save_steps,
        lora_r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        lora_target_modules=lora.target_modules,
        max_length=lora.max_length,
        load_in_4bit=lora.load_in_4bit,
        train_on_responses_only=trainer.train_on_responses_only,
        precision=trainer.precision,
        packing=trainer.packing,
        seed=trainer.seed,
        dry_run=trainer.dry_run,
        strict_stack=trainer.strict_stack,
        eval=evaluation if evaluation is not None else eval_spec_for(trainer, None, None),
        resources=_resources(trainer),
    )


def _resources(trainer: Trainer) -> ResourcesSpec | None:
    """``trainer.resources`` on the wire; None when no key is set, as before the table existed."""
    spec = ResourcesSpec.model_validate(trainer.resources.model_dump(exclude_none=True))
    return spec if spec.model_dump(exclude_none=True) else None


def _callback_entry(callback: ResolvedCallback, root: Path) -> ManifestCallback:
    return ManifestCallback(
        target=callback.target,
        module=callback.module,
        attribute=callback.attribute,
        file=_relative(callback.file, root) if callback.file else None,
        sha256=callback.sha256,
    )


def _secrets(loaded: LoadedConfig) -> list[ManifestSecret]:
    """Every environment variable that secret-bearing fields reference, by field."""
    secrets: list[ManifestSecret] = []
    for path in sorted(SECRET_FIELDS):
        node: object = loaded.raw.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            for name in dict.fromkeys(_ENV_NAME.findall(node)):
                secrets.append(ManifestSecret(path=format_key_path(path), env=name))
    return secrets


def _relative(path: Path, root: Path) -> str:
    """A POSIX path relative to the project root when inside it, else absolute."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
