"""Freeze a config into ``.arkor/build/manifest.json``.

Validate, resolve (callbacks imported and digested, a local dataset checked and
digested, defaults filled), then write the manifest atomically. A failed build raises
before anything is written, so the previous manifest stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from arkor._fs import atomic_write_text, sha256_file
from arkor._version import __version__
from arkor.cloud import (
    BlobDatasetSource,
    DatasetSource,
    FileDatasetSource,
    HuggingfaceDatasetSource,
    JobConfig,
    JobCreate,
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
from arkor.manifest._callbacks import ResolvedCallback, resolve_callbacks
from arkor.manifest._check import dataset_file, dataset_file_issue
from arkor.manifest._dataset import DatasetReport, default_mapping, inspect_dataset
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


def build(
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Validate and freeze the config; return the path of the manifest written.

    >>> import arkor
    >>> arkor.build("arkor.toml", ["trainer.max_steps=10"])   # doctest: +SKIP
    PosixPath('/project/.arkor/build/manifest.json')
    """
    return build_project(config, overrides, cwd=cwd, env=env).path


def build_project(
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildResult:
    """Like :func:`build`, returning the manifest and loaded config as well."""
    loaded = load_config(config, overrides, cwd=cwd, env=env)
    manifest = freeze(loaded)
    path = manifest_path_for(loaded.root)
    text = canonical_json({**manifest.body(), "digest": manifest.digest})
    changed = not path.is_file() or path.read_text(encoding="utf-8") != text
    if changed:
        atomic_write_text(path, text)
    return BuildResult(path, manifest, loaded, changed)


def freeze(loaded: LoadedConfig) -> Manifest:
    """Resolve everything a run needs into a :class:`Manifest` (nothing is written)."""
    trainer = loaded.config.trainer
    raw = loaded.raw
    callbacks = resolve_callbacks(trainer.callbacks, raw)
    dataset, dataset_entry, report = _freeze_dataset(loaded)
    job = JobCreate(name=trainer.name, config=job_config_for(trainer, dataset, report))
    body = Manifest(
        manifest_version=MANIFEST_VERSION,
        arkor_version=__version__,
        job=job,
        callbacks={event: _callback_entry(cb, loaded.root) for event, cb in callbacks.items()},
        dataset=dataset_entry,
        sources=[
            ManifestSource(
                path=_relative(source.path, loaded.root), role=source.role, sha256=source.sha256
            )
            for source in loaded.sources
        ],
        secrets=_secrets(loaded),
        overrides=list(loaded.overrides),
        cloud_url=loaded.config.cloud.url,
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
    trainer: Trainer, dataset: DatasetSource, report: DatasetReport | None
) -> JobConfig:
    """The wire job config for ``trainer``, every default filled (what a manifest freezes).

    ``report`` (from checking a local file) supplies the detected row format.
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
        seed=trainer.seed,
        dry_run=trainer.dry_run,
    )


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
