"""Freeze ``trainer.eval``: its own file checked and digested, its held-out rows by hash.

For a local data file the held-out rows are chosen here exactly as the worker chooses
them (:func:`arkor.evals.hold_out` over the file's rows, with the run's seed), so the
manifest can list them by hash and the worker can prove it holds out the same ones
(``EvalSpec.held_out_sha256``). Rows that live elsewhere (the Hub, a URL, Parquet without
``pyarrow``) are chosen by the worker alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor._formats import FILE_SUFFIXES, FormatError, iter_file_rows
from arkor._fs import sha256_file
from arkor.cloud import EvalSpec, FileDatasetSource
from arkor.config import ConfigError, ConfigIssue, KeyPath, LoadedConfig, Trainer
from arkor.evals import hold_out, row_sha256, rows_digest
from arkor.manifest._check import (
    eval_file,
    eval_issues,
    held_out_key,
    held_out_setting,
    text_rows_problem,
)
from arkor.manifest._dataset import DatasetReport, inspect_dataset
from arkor.manifest._manifest import (
    ManifestCallback,
    ManifestDataset,
    ManifestEval,
    ManifestHeldOut,
)


@dataclass(frozen=True)
class FrozenEval:
    """What build resolved for ``trainer.eval``: the eval file's wire source and the held-out rows."""

    source: FileDatasetSource | None
    file: ManifestDataset | None
    held_out: ManifestHeldOut | None


def freeze_eval(
    loaded: LoadedConfig,
    relative: Callable[[Path], str],
    dataset_file: Path | None,
    report: DatasetReport | None,
) -> FrozenEval | None:
    """Check ``trainer.eval`` against its rows; None without an eval block.

    ``dataset_file`` and ``report`` are the local training file and what checking it
    found (None for remote data). ``relative`` turns a path into the manifest's form.
    Raises one :class:`ConfigError` listing every problem, each at the key to change.
    """
    trainer = loaded.config.trainer
    evaluation = trainer.eval
    if evaluation is None:
        return None
    issues = eval_issues(loaded)
    if issues:
        raise ConfigError(issues)
    raw = loaded.raw

    def fail(problem: str, key: KeyPath) -> ConfigError:
        return ConfigError([ConfigIssue(problem, raw.locate(key), key)])

    source: FileDatasetSource | None = None
    entry: ManifestDataset | None = None
    asked: Sequence[Any] | None = None
    if evaluation.path is not None:
        file = eval_file(loaded, evaluation.path)
        shown = relative(file)
        eval_report = inspect_dataset(file, shown, _format_setting(trainer))
        if _is_text(eval_report):
            raise fail(text_rows_problem(), ("trainer", "eval", "path"))
        digest, size = sha256_file(file)
        source = FileDatasetSource(path=shown, sha256=digest)
        entry = ManifestDataset(
            type="file",
            path=shown,
            sha256=digest,
            size=size,
            rows=eval_report.rows,
            file_format=eval_report.file_format,
        )
        asked = file_rows(file)
    elif report is not None and _is_text(report):
        raise fail(text_rows_problem(), ("trainer", "dataset_format"))
    training = file_rows(dataset_file) if dataset_file is not None else None
    held: ManifestHeldOut | None = None
    fraction = held_out_setting(trainer)
    if asked is not None:
        held = _held_out("eval file", None, None, len(asked), [row_sha256(row) for row in asked])
        train_hashes = [row_sha256(row) for row in training] if training is not None else None
    elif isinstance(fraction, float) and training is not None:
        key = held_out_key(trainer)
        if len(training) < 2:
            raise fail(
                f"the evaluation holds out a {fraction:g} fraction of the rows, but the dataset "
                f"has {len(training)} row, which training needs. Add rows, or give the "
                "evaluation rows of its own in trainer.eval.path.",
                key,
            )
        kept, out = hold_out(len(training), fraction, trainer.seed)
        hashes = [row_sha256(row) for row in training]
        held = _held_out("dataset", fraction, trainer.seed, len(training), [hashes[i] for i in out])
        train_hashes = [hashes[i] for i in kept]
    else:
        train_hashes = None
    if held is not None and train_hashes is not None:
        left = set(train_hashes) - set(held.row_sha256)
        if not left:
            raise fail(
                "every training row is also one of the evaluation's held-out rows (the data "
                "repeats them), and a held-out row is never trained on, so nothing is left to "
                "train on. Add distinct rows, or give the evaluation rows of its own in "
                "trainer.eval.path.",
                held_out_key(trainer) if evaluation.path is None else ("trainer", "eval", "path"),
            )
    return FrozenEval(source, entry, held)


def eval_spec_for(
    trainer: Trainer, source: FileDatasetSource | None, held_out_sha256: str | None
) -> EvalSpec | None:
    """``trainer.eval`` on the wire, the held-out setting resolved (see :func:`held_out_setting`).

    Every metric goes in ``metrics``, custom ones by dotted path: the worker scores the
    built-ins and the client (which has the user's code) the rest.
    """
    evaluation = trainer.eval
    if evaluation is None:
        return None
    return EvalSpec(
        held_out=held_out_setting(trainer),
        source=source,
        rows=evaluation.rows,
        metrics=list(evaluation.metrics),
        max_new_tokens=evaluation.max_new_tokens,
        batch_size=evaluation.batch_size,
        at_checkpoints=evaluation.at_checkpoints,
        held_out_sha256=held_out_sha256,
    )


def eval_entry(metrics: list[ManifestCallback], frozen: FrozenEval | None) -> ManifestEval | None:
    """The manifest's ``eval`` section; None when there is nothing to record."""
    if frozen is None and not metrics:
        return None
    return ManifestEval(
        metrics=metrics,
        file=frozen.file if frozen is not None else None,
        held_out=frozen.held_out if frozen is not None else None,
    )


def file_rows(path: Path) -> list[Any] | None:
    """Every row of a checked data file, as the worker reads it; None for Parquet without pyarrow."""
    file_format = FILE_SUFFIXES[path.suffix.lower()]
    if file_format == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None
        rows: list[Any] = pq.read_table(path).to_pylist()
        return rows
    try:
        return [row for _, row in iter_file_rows(path, file_format)]
    except FormatError:  # the file was checked just before; a change since is not ours to report
        return None


def _held_out(
    source: str, fraction: float | None, seed: int | None, total: int, hashes: list[str]
) -> ManifestHeldOut:
    return ManifestHeldOut(
        source=source,
        fraction=fraction,
        seed=seed,
        total_rows=total,
        row_sha256=hashes,
        rows_digest=rows_digest(hashes),
    )


def _is_text(report: DatasetReport) -> bool:
    return isinstance(report.format, dict) and report.format.get("type") == "text"


def _format_setting(trainer: Trainer) -> str | dict[str, str]:
    value = trainer.dataset_format
    return value if isinstance(value, str) else value.model_dump()
