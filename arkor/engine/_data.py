"""The data stage: turn a job's dataset into tokenized, label-masked training examples.

Rows come from the HuggingFace Hub (``datasets.load_dataset``: a Hub id and a local
dataset folder take the same path), from a URL (streamed to the cache with httpx), or
from a local file. Files are read with the standard library through
:mod:`arkor._formats`, the reader and row checks ``arkor build`` used, so a file that
built reads the same way here (Parquet through pyarrow).

Rows are rendered with the tokenizer's chat template and tokenized in batches. With
``train_on_responses_only`` the labels keep only the assistant turns: each turn is
located as a span of characters in the rendered text, and the tokenizer's offsets map
the spans onto tokens, so no template-specific markers are needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from arkor._formats import (
    FILE_SUFFIXES,
    FormatError,
    check_row,
    detect_mapping,
    iter_file_rows,
    messages_in,
    object_problem,
    resolve_mapping,
)
from arkor._fs import atomic_write_chunks
from arkor.cloud import (
    BlobDatasetSource,
    DatasetSource,
    FileDatasetSource,
    HuggingfaceDatasetSource,
    JobConfig,
)
from arkor.engine._eval import HeldOutRow
from arkor.engine._models import require_chat_template
from arkor.errors import ArkorError
from arkor.evals import RowError, hold_out, pruned_row, row_sha256, rows_digest, split_row

if TYPE_CHECKING:
    import datasets  # type: ignore[import-untyped]
    import httpx
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""The label of a token the loss skips (the prompt, when training on responses only)."""
DEFAULT_MAX_LENGTH = 1024
DEFAULT_SEED = 42
DRY_RUN_TRAIN_ROWS = 32
DRY_RUN_EVAL_ROWS = 8
DEFAULT_HELD_OUT = 0.1
"""The fraction of rows an eval block without held_out or path holds out."""
_BATCH_ROWS = 512
_DOWNLOAD_TIMEOUT_S = 60.0
_CONTENT_TYPES = {
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/json": "json",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}
"""Response content type → file type, for URLs whose path has no known extension."""


@dataclass(frozen=True)
class Example:
    """One tokenized row. ``labels`` is ``IGNORE_INDEX`` where the loss skips a token."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class PreparedData:
    """What the trainer gets: examples as plain lists, padded per batch later."""

    train: list[Example]
    eval: list[Example] | None
    format: dict[str, str]
    """The resolved column mapping, e.g. ``{"type": "chat", "messages": "messages"}``."""
    rows: int
    """Training rows used, after the eval hold-out and the dry-run cap."""
    truncated: int
    """Examples (train and eval) cut at ``max_length``."""
    dropped: int = 0
    """Examples (train and eval) left out because truncation removed every trainable token."""
    pin: dict[str, str] = field(default_factory=dict)
    """What the rows were read from: ``{"revision": ...}`` for a Hub dataset, ``{"sha256": ...}``
    for a file or URL (plus ``etag`` when the server sent one); empty when unknown."""
    held_out: HeldOut | None = None
    """The rows the base-vs-adapter evaluation asks (``trainer.eval``); None without one."""


@dataclass(frozen=True)
class HeldOut:
    """The rows kept out of training for the evaluation, and what became of them."""

    items: list[HeldOutRow]
    """Every held-out row in source order; one with no answer to compare with has no prompt."""
    digest: str
    """:func:`arkor.evals.rows_digest` of every held-out row's hash."""
    skipped: int
    """Held-out rows with no answer to compare with (no assistant turn): not asked."""
    duplicates: int
    """Training rows left out because a held-out row is the same row."""


class DataError(ArkorError):
    """The dataset cannot be loaded or used; the message names the row and what is wrong."""


def load_rows(
    source: DatasetSource,
    *,
    dataset_file: Path | None,
    cache_dir: Path,
    split: str | None = None,
) -> datasets.Dataset:
    """The rows of ``source`` as a ``datasets.Dataset``.

    ``split`` picks a split of a Hub dataset (default: the source's own, else ``train``);
    files and URLs hold one table, so they have none. ``dataset_file`` is the local copy
    of a ``file`` source. Downloads and the datasets cache stay under ``cache_dir``.
    """
    return _load_pinned(source, dataset_file=dataset_file, cache_dir=cache_dir, split=split)[0]


def _load_pinned(
    source: DatasetSource,
    *,
    dataset_file: Path | None,
    cache_dir: Path,
    split: str | None = None,
) -> tuple[datasets.Dataset, dict[str, str]]:
    """:func:`load_rows`, refusing data that differs from the source's pin; with what was read.

    A Hub dataset loads at its pinned ``revision``; a URL's bytes must match its pinned
    ``sha256`` (or its ``etag`` / ``last_modified``); a file's bytes its ``sha256``.
    """
    if isinstance(source, HuggingfaceDatasetSource):
        pin = {"revision": source.revision} if source.revision else {}
        return _load_hub(source, split or _train_split(source), cache_dir), pin
    if split is not None:
        raise _named_split_error(split, source)
    where = _describe(source, dataset_file)
    if isinstance(source, BlobDatasetSource):
        path, file_format, pin = _download(source, cache_dir, where)
    else:
        path, file_format = _local_file(source, dataset_file, where)
        pin = {"sha256": _check_file_pin(path, source, where)}
    return _read_file(path, file_format, where), pin


def pin_hub_dataset(source: DatasetSource) -> DatasetSource:
    """A Hub dataset the manifest left unpinned, pinned now to the commit its branch is at.

    The Hub's answer when online, else the local Hub cache's; unchanged when neither can
    say (``load_dataset`` then reads the default branch) or for a local dataset folder.
    """
    if not isinstance(source, HuggingfaceDatasetSource) or source.revision is not None:
        return source
    if Path(source.name).expanduser().exists():
        return source
    from arkor.pins import NotOnHub, Unresolved, resolve_revision

    try:
        revision = resolve_revision("dataset", source.name)
    except (Unresolved, NotOnHub):
        return source
    return source.model_copy(update={"revision": revision.sha})


def prepare_data(
    config: JobConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset_file: Path | None,
    cache_dir: Path,
    eval_file: Path | None = None,
) -> PreparedData:
    """Load, check, split, render, tokenize and mask the job's rows (see the module docstring).

    With ``trainer.eval`` the evaluation's rows are held out too: a fraction of the rows,
    a Hub split, or the uploaded eval file (``eval_file``); training rows that equal a
    held-out row are left out as well, so no evaluated row is ever trained on.
    """
    source = config.dataset_source
    split = _held_out_setting(config)
    if isinstance(split, str) and not isinstance(source, HuggingfaceDatasetSource):
        raise _named_split_error(split, source)
    if isinstance(split, float) and not 0 < split < 1:
        raise DataError(
            f"dataset_split = {split} cannot be used: a fraction of rows to hold out for "
            "evaluation must be between 0 and 1 (e.g. 0.1)."
        )
    # the wire model has checked the format already (a 422 at the plane otherwise)
    wanted = resolve_mapping(config.dataset_format)

    where = _describe(source, dataset_file)
    source = pin_hub_dataset(source)
    dataset, pin = _load_pinned(source, dataset_file=dataset_file, cache_dir=cache_dir)
    _require_rows(dataset, where)
    try:
        mapping = wanted or detect_mapping(dataset[0])
    except FormatError as error:
        raise DataError(f"Cannot use {where}: {error.message}") from None
    _check_columns(dataset, mapping, where)

    seed = config.seed if config.seed is not None else DEFAULT_SEED
    train_rows: Sequence[int] = range(len(dataset))
    held_out: tuple[datasets.Dataset, Sequence[int], str] | None = None
    held_mapping = mapping
    if isinstance(split, float):
        train_rows, eval_rows = _hold_out(len(dataset), split, seed, where)
        held_out = (dataset, eval_rows, where)
    elif isinstance(split, str):
        eval_dataset = load_rows(
            source, dataset_file=dataset_file, cache_dir=cache_dir, split=split
        )
        eval_where = _describe(source, dataset_file, split)
        _require_rows(eval_dataset, eval_where)
        _check_columns(eval_dataset, mapping, eval_where)
        held_out = (eval_dataset, range(len(eval_dataset)), eval_where)
    asked = held_out
    if config.eval is not None and config.eval.source is not None:
        eval_source = config.eval.source
        eval_where = _describe(eval_source, eval_file).replace("dataset file", "eval file", 1)
        eval_dataset, _ = _load_pinned(eval_source, dataset_file=eval_file, cache_dir=cache_dir)
        _require_rows(eval_dataset, eval_where)
        try:
            held_mapping = wanted or detect_mapping(eval_dataset[0])
        except FormatError as error:
            raise DataError(f"Cannot use {eval_where}: {error.message}") from None
        _check_columns(eval_dataset, held_mapping, eval_where)
        asked = (eval_dataset, range(len(eval_dataset)), eval_where)
    questions = None
    if config.eval is not None and asked is not None:
        questions = _questions(*asked, held_mapping)
        _check_held_out_digest(questions, config.eval.held_out_sha256, asked[2])
        train_rows, duplicates = _without_copies(dataset, train_rows, questions.hashes)
        questions = questions.with_duplicates(duplicates)
    if config.dataset_split is None:
        held_out = None  # the evaluation's rows: no eval loss was asked for
    if config.dry_run:
        train_rows = train_rows[:DRY_RUN_TRAIN_ROWS]
        if held_out is not None:
            held_out = (held_out[0], held_out[1][:DRY_RUN_EVAL_ROWS], held_out[2])

    encoder = _Encoder(
        tokenizer,
        mapping,
        max_length=config.max_length or DEFAULT_MAX_LENGTH,
        responses_only=config.train_on_responses_only is not False,
    )
    train = encoder.encode(dataset, train_rows, where)
    evaluation = encoder.encode(*held_out) if held_out is not None else None
    for examples, name in ((train, "training"), (evaluation, "evaluation")):
        if examples == []:
            raise DataError(
                f"No {name} row has a token left to learn from after truncating to max_length = "
                f"{encoder.max_length}: the prompts fill the whole length, or the rows have no "
                "assistant turns. Raise max_length, or shorten the prompts."
            )
    return PreparedData(
        train=train,
        eval=evaluation,
        format=mapping,
        rows=len(train_rows),
        truncated=encoder.truncated,
        dropped=encoder.dropped,
        pin=pin,
        held_out=questions.held_out if questions is not None else None,
    )


def _held_out_setting(config: JobConfig) -> float | str | None:
    """What is held out of training: ``eval.held_out``, else ``dataset_split``, else (with an
    eval block and no eval file) 10 % of the rows."""
    spec, split = config.eval, config.dataset_split
    if spec is None:
        return split
    if spec.held_out is not None and spec.source is not None:
        raise DataError(
            "trainer.eval sets both held_out and path: evaluate on held-out rows of the data, or "
            "on the file in path, not both. Remove one of them."
        )
    if spec.held_out is not None and split is not None and spec.held_out != split:
        raise DataError(
            f"trainer.eval.held_out = {spec.held_out!r} and trainer.dataset_split = {split!r} "
            "differ: one set of held-out rows serves both the eval loss and the evaluation. "
            "Set one of them, or both alike."
        )
    if spec.held_out is not None:
        return spec.held_out
    if split is not None or spec.source is not None:
        return split
    return DEFAULT_HELD_OUT


# Held-out rows


@dataclass(frozen=True)
class _Questions:
    """Held-out rows as the evaluation asks them, while training rows are still being chosen."""

    held_out: HeldOut
    hashes: frozenset[str]

    def with_duplicates(self, duplicates: int) -> _Questions:
        return _Questions(dataclasses.replace(self.held_out, duplicates=duplicates), self.hashes)


def _questions(
    dataset: datasets.Dataset, indices: Sequence[int], where: str, mapping: Mapping[str, str]
) -> _Questions:
    """Every held-out row hashed, and split into a prompt and its reference where it can be."""
    items: list[HeldOutRow] = []
    hashes: list[str] = []
    skipped = 0
    for start in range(0, len(indices), _BATCH_ROWS):
        chosen = list(indices[start : start + _BATCH_ROWS])
        for index, row in zip(chosen, _rows(dataset, chosen), strict=True):
            clean = pruned_row(row)
            digest = row_sha256(clean)
            hashes.append(digest)
            prompt: list[dict[str, Any]] | None = None
            reference: str | None = None
            if not check_row(row, mapping):
                with contextlib.suppress(RowError, KeyError):  # no answer: kept, not asked
                    prompt, reference = split_row(clean, mapping)
            skipped += prompt is None
            items.append(HeldOutRow(index + 1, digest, prompt, reference, clean))
    if skipped == len(items):
        raise DataError(
            f"None of the {len(items)} held-out rows of {where} can be evaluated: evaluation "
            "asks each row's prompt and compares the answer with the row's last assistant turn, "
            "and no row has one. Use chat or prompt/completion rows that end with an answer."
        )
    held = HeldOut(items, rows_digest(hashes), skipped, 0)
    return _Questions(held, frozenset(hashes))


def _check_held_out_digest(questions: _Questions, expected: str | None, where: str) -> None:
    if expected is not None and questions.held_out.digest != expected:
        raise DataError(
            f"The held-out rows of {where} are not the ones `arkor build` recorded (their digest "
            f"is {questions.held_out.digest[:12]} here, {expected[:12]} in the manifest), so the "
            "evaluation could not be trusted to be on rows never trained on. The data or the "
            "seed changed since the build: run `arkor build` again, then `arkor start`."
        )


def _without_copies(
    dataset: datasets.Dataset, indices: Sequence[int], held: frozenset[str]
) -> tuple[list[int], int]:
    """The training rows less any that equal a held-out row, and how many were left out."""
    kept: list[int] = []
    for start in range(0, len(indices), _BATCH_ROWS):
        chosen = list(indices[start : start + _BATCH_ROWS])
        kept.extend(
            index
            for index, row in zip(chosen, _rows(dataset, chosen), strict=True)
            if row_sha256(row) not in held
        )
    if not kept:
        raise DataError(
            "Every training row is also a held-out row, so nothing is left to train on. Give "
            "the evaluation rows of its own (trainer.eval.path), or hold out fewer rows."
        )
    return kept, len(indices) - len(kept)


# Sources


def _train_split(source: HuggingfaceDatasetSource) -> str:
    return source.split or "train"


def _describe(source: DatasetSource, dataset_file: Path | None, split: str | None = None) -> str:
    """How messages name the dataset: the user's own name for it, never a secret."""
    if isinstance(source, HuggingfaceDatasetSource):
        return f"the HuggingFace dataset `{source.name}` (split `{split or _train_split(source)}`)"
    if isinstance(source, BlobDatasetSource):
        return f"the dataset at {_public_url(source.url)}"
    name = source.path or (dataset_file.name if dataset_file is not None else source.upload_id)
    return f"the dataset file `{name}`"


def _public_url(url: str) -> str:
    """The URL without its query, fragment and user info, which may carry signatures."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _named_split_error(split: str, source: DatasetSource) -> DataError:
    return DataError(
        f'dataset_split = "{split}" names a split, but only HuggingFace datasets have named '
        f"splits and this dataset is a {source.type} source. Hold out a fraction of its rows "
        "instead (e.g. dataset_split = 0.1), or leave dataset_split unset."
    )


def _load_hub(source: HuggingfaceDatasetSource, split: str, cache_dir: Path) -> datasets.Dataset:
    import datasets

    try:
        return datasets.load_dataset(
            source.name,
            source.subset,
            split=split,
            revision=source.revision,
            cache_dir=str(cache_dir / "datasets"),
        )
    except Exception as error:  # the loader runs a dataset's own code; any failure is the data's
        pinned = (
            f" at the commit the manifest pinned ({source.revision[:12]})"
            if source.revision
            else ""
        )
        raise DataError(
            f"Cannot load {_describe(source, None, split)}{pinned}: {_one_line(error)} Check the "
            "name, subset and split, and that this machine can reach the HuggingFace Hub (or has "
            "the dataset cached)."
        ) from error


def _download(
    source: BlobDatasetSource, cache_dir: Path, where: str
) -> tuple[Path, str, dict[str, str]]:
    """Stream the URL to ``cache_dir/blobs``, named by a hash of the URL, replaced atomically.

    Refuses bytes (or validator headers) that differ from the source's pin; returns the
    file, its type, and the sha256 (and ETag) of what was read.
    """
    import httpx

    folder = cache_dir / "blobs"
    folder.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha256(source.url.encode("utf-8")).hexdigest()[:32]
    headers = {"Authorization": f"Bearer {source.token}"} if source.token else {}
    try:
        with httpx.stream(
            "GET",
            source.url,
            headers=headers,
            follow_redirects=True,
            timeout=_DOWNLOAD_TIMEOUT_S,
        ) as response:
            _check_response(response, source, where)
            file_format = _suffix_format(urlsplit(source.url).path) or _CONTENT_TYPES.get(
                response.headers.get("content-type", "").partition(";")[0].strip().lower()
            )
            if file_format is None:
                raise DataError(
                    f"Cannot tell what kind of file {where} is: its URL has no .jsonl, .ndjson, "
                    ".json, .csv or .parquet extension, and the server sent it as "
                    f"`{response.headers.get('content-type', 'no content type')}`. End the URL's "
                    "path with the extension, or serve it with a JSON Lines, JSON, CSV or "
                    "Parquet content type."
                )
            _check_blob_headers(response, source, where)
            target = folder / f"{stem}.{file_format}"
            digest = hashlib.sha256()
            atomic_write_chunks(target, _hashed(response.iter_bytes(), digest))
            etag = response.headers.get("etag")
    except httpx.HTTPError as error:
        raise DataError(
            f"Cannot download {where}: {_one_line(error)} Check the URL and that this machine "
            "can reach it."
        ) from error
    if source.sha256 is not None and digest.hexdigest() != source.sha256:
        target.unlink(missing_ok=True)
        raise DataError(
            f"The data at {where.removeprefix('the dataset at ')} is not what the manifest pinned: "
            f"its sha256 is {digest.hexdigest()[:12]} now, {source.sha256[:12]} at `arkor build`. "
            "The file behind the URL changed. Serve the pinned file again, or run `arkor build "
            "--upgrade-data` to pin the new one."
        )
    return target, file_format, {"sha256": digest.hexdigest(), **({"etag": etag} if etag else {})}


def _hashed(chunks: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _check_blob_headers(response: httpx.Response, source: BlobDatasetSource, where: str) -> None:
    """A URL pinned by ETag or Last-Modified (too large to hash at build) must still send it."""
    for pinned, header in ((source.etag, "etag"), (source.last_modified, "last-modified")):
        served = response.headers.get(header)
        if pinned is not None and served != pinned:
            raise DataError(
                f"The data at {where.removeprefix('the dataset at ')} is not what the manifest "
                f"pinned: the server's {header.title()} is {served or '(none)'} now, {pinned} at "
                "`arkor build`. The file behind the URL changed. Serve the pinned file again, "
                "or run `arkor build --upgrade-data` to pin the new one."
            )


def _check_file_pin(path: Path, source: FileDatasetSource, where: str) -> str:
    """The sha256 of a file dataset's copy, refused when it is not the bytes ``arkor build`` pinned."""
    from arkor._fs import sha256_file

    digest, _ = sha256_file(path)
    if source.sha256 is not None and digest != source.sha256:
        raise DataError(
            f"The copy of {where} the plane holds is not the file the manifest pinned (sha256 "
            f"{digest[:12]}, pinned {source.sha256[:12]}). Run `arkor start` again to upload "
            "the pinned file, or `arkor build` to re-lock on the file as it is now."
        )
    return digest


def _check_response(response: httpx.Response, source: BlobDatasetSource, where: str) -> None:
    status = response.status_code
    if status in (401, 403):
        if source.token:
            raise DataError(
                f"The server refused the token sent for {where} (HTTP {status}). Check that the "
                "environment variable the dataset's `token` names holds a valid token for this URL."
            )
        raise DataError(
            f"The server refused to send {where} without credentials (HTTP {status}). Give the "
            'dataset a token: `token = "${env:NAME}"`, with the token in that environment variable.'
        )
    if status == 404:
        raise DataError(f"Nothing was found at {where} (HTTP 404). Check the URL.")
    if status >= 400:
        raise DataError(
            f"Downloading {where} failed: the server answered HTTP {status} "
            f"{response.reason_phrase}. Check the URL, or try again later."
        )


def _local_file(
    source: FileDatasetSource, dataset_file: Path | None, where: str
) -> tuple[Path, str]:
    if dataset_file is None or not dataset_file.is_file():
        missing = (
            "no copy of it was given" if dataset_file is None else f"{dataset_file} is missing"
        )
        raise DataError(
            f"Cannot read {where}: {missing}. Upload the file again (run `arkor start` again)."
        )
    file_format = _suffix_format(dataset_file.name) or _suffix_format(source.path or "")
    if file_format is None:
        raise DataError(
            f"Cannot tell what kind of file {where} is: name it .jsonl, .ndjson, .json, .csv "
            "or .parquet."
        )
    return dataset_file, file_format


def _suffix_format(name: str) -> str | None:
    return FILE_SUFFIXES.get(Path(name).suffix.lower())


def _read_file(path: Path, file_format: str, where: str) -> datasets.Dataset:
    """Read a file into a Dataset; columns whose rows disagree on a type are kept as JSON."""
    import datasets

    if file_format == "parquet":
        import pyarrow.parquet as pq

        try:
            return datasets.Dataset(pq.read_table(path))
        except (OSError, ValueError) as error:
            raise DataError(
                f"Cannot read {where}: it is not a readable Parquet file ({_one_line(error)})"
            ) from None
    rows: list[dict[str, Any]] = []
    try:
        for number, (_, row) in enumerate(iter_file_rows(path, file_format), start=1):
            if problem := object_problem(row):
                raise DataError(_row_message(number, where, problem))
            rows.append(row)
    except FormatError as error:
        at = f" (line {error.line})" if error.line is not None else ""
        raise DataError(f"Cannot read {where}{at}: {error.message}") from None
    return rows_table(rows, where)


def rows_table(rows: Sequence[Mapping[str, Any]], where: str) -> datasets.Dataset:
    """Rows as a Dataset, as a file's are read: every row gets every column (None where it
    lacks one), and a column whose rows disagree on a type is kept as JSON text."""
    import datasets

    columns = list(dict.fromkeys(key for row in rows for key in row))
    try:
        return datasets.Dataset.from_dict(
            {column: [row.get(column) for row in rows] for column in columns},
            on_mixed_types="use_json",
        )
    except (ValueError, TypeError, OverflowError) as error:
        raise DataError(
            f"Cannot read {where}: its columns do not form a table ({_one_line(error)})"
        ) from None


# Rows


def _require_rows(dataset: datasets.Dataset, where: str) -> None:
    if len(dataset) == 0:
        raise DataError(f"There are no rows in {where}: it needs at least one row to train on.")


def _check_columns(dataset: datasets.Dataset, mapping: Mapping[str, str], where: str) -> None:
    """Name a mapped column the data lacks once, rather than failing on every row."""
    present: list[str] = list(dataset.column_names)
    kind = mapping["type"]
    for key, column in mapping.items():
        if key != "type" and column not in present:
            raise DataError(
                f"{where[0].upper()}{where[1:]} has no `{column}` column, which the {kind} "
                f"format reads its {key} from (its columns: "
                f"{', '.join(f'`{name}`' for name in present)}). Name the right column in "
                f'dataset_format, e.g. `{{ type = "{kind}", {key} = "<column>" }}`.'
            )


def _hold_out(count: int, fraction: float, seed: int, where: str) -> tuple[list[int], list[int]]:
    """Split row indices into (train, eval) as :func:`arkor.evals.hold_out` (and so ``arkor
    build``) does, the same way for the same seed."""
    if count < 2:
        raise DataError(
            f"A fraction of {fraction} of the rows is held out for evaluation, but {where} has "
            "only one row, which training needs. Add rows, or leave dataset_split (and "
            "trainer.eval.held_out) unset."
        )
    return hold_out(count, fraction, seed)


def _row_message(number: int, where: str, problem: str) -> str:
    return f"Row {number} of {where} cannot be used: {problem}"


def _one_line(error: BaseException) -> str:
    """An exception's message as one sentence, for a one-paragraph error."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if text.endswith((".", "!", "?")) else f"{text}."


# Rendering, tokenizing, masking


@dataclass(frozen=True)
class _Rendered:
    text: str
    spans: list[tuple[int, int]]
    """Character spans of ``text`` whose tokens keep their labels (when masking)."""


@dataclass(frozen=True)
class EncodedRow:
    """One row as training tokenizes and masks it, before truncation at ``max_length``."""

    text: str
    """What the row renders to (the chat template's output, for chat rows)."""
    input_ids: list[int]
    labels: list[int]
    offsets: list[tuple[int, int]] | None
    """Each token's characters in ``text`` (an appended EOS has none); None from a slow tokenizer."""


class _Encoder:
    """Renders rows, tokenizes them in batches and masks the labels, counting truncation."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mapping: dict[str, str],
        *,
        max_length: int,
        responses_only: bool,
    ) -> None:
        kind = mapping["type"]
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if kind == "chat":
            require_chat_template(tokenizer, getattr(tokenizer, "name_or_path", "") or "this model")
        self.tokenizer = tokenizer
        self.mapping = mapping
        self.max_length = max_length
        self.templated = kind == "chat" or (kind == "prompt_completion" and has_template)
        """Rendered by the chat template, which writes the special tokens itself."""
        self.masked = responses_only and kind != "text"
        if self.masked and not tokenizer.is_fast:
            raise DataError(
                "train_on_responses_only needs a fast tokenizer (one that reports character "
                "offsets), and this model's tokenizer is not one. Set "
                "train_on_responses_only = false to train on whole rows."
            )
        eos = tokenizer.eos_token_id
        self.eos_id = eos if isinstance(eos, int) and not self.templated else None
        """Appended to rows that no template ends, so the model learns where to stop."""
        self.truncated = 0
        self.dropped = 0

    def encode(
        self, dataset: datasets.Dataset, indices: Sequence[int], where: str
    ) -> list[Example]:
        examples: list[Example] = []
        for start in range(0, len(indices), _BATCH_ROWS):
            chosen = list(indices[start : start + _BATCH_ROWS])
            rendered = [
                self._render(row, index + 1, where)
                for index, row in zip(chosen, _rows(dataset, chosen), strict=True)
            ]
            for row in self._tokenize(rendered, offsets=self.masked):
                example = self._example(row)
                if example is not None:
                    examples.append(example)
        return examples

    def encode_each(self, dataset: datasets.Dataset, where: str) -> list[EncodedRow | DataError]:
        """Every row of ``dataset`` as :meth:`encode` tokenizes it, or the error it raises there.

        Nothing is truncated or counted, so a caller can show what training keeps of each row.
        """
        results: list[EncodedRow | DataError] = []
        offsets = self.masked or bool(self.tokenizer.is_fast)
        for start in range(0, len(dataset), _BATCH_ROWS):
            chosen = list(range(start, min(start + _BATCH_ROWS, len(dataset))))
            rendered: list[_Rendered | DataError] = []
            for index, row in zip(chosen, _rows(dataset, chosen), strict=True):
                try:
                    rendered.append(self._render(row, index + 1, where))
                except DataError as error:
                    rendered.append(error)
            encoded = iter(
                self._tokenize(
                    [item for item in rendered if isinstance(item, _Rendered)], offsets=offsets
                )
            )
            results.extend(
                item if isinstance(item, DataError) else next(encoded) for item in rendered
            )
        return results

    def _tokenize(self, rendered: list[_Rendered], *, offsets: bool) -> list[EncodedRow]:
        """Tokenize rendered rows in one batch and label them (masked, with EOS appended)."""
        if not rendered:
            return []
        encoded = self.tokenizer(
            [item.text for item in rendered],
            add_special_tokens=not self.templated,
            return_offsets_mapping=offsets,
            return_attention_mask=False,
        )
        rows: list[EncodedRow] = []
        for position, item in enumerate(rendered):
            ids = list(encoded["input_ids"][position])
            at = list(encoded["offset_mapping"][position]) if offsets else None
            labels = (
                _span_labels(ids, at, item.spans) if self.masked and at is not None else list(ids)
            )
            if self.eos_id is not None:
                if ids and ids[-1] == self.eos_id:
                    labels[-1] = self.eos_id
                else:
                    ids.append(self.eos_id)
                    labels.append(self.eos_id)
            rows.append(EncodedRow(item.text, ids, labels, at))
        return rows

    def _example(self, row: EncodedRow) -> Example | None:
        ids, labels = row.input_ids, row.labels
        if len(ids) > self.max_length:
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            self.truncated += 1
        if labels.count(IGNORE_INDEX) == len(labels):
            self.dropped += 1
            return None
        return Example(input_ids=ids, labels=labels)

    def _render(self, row: dict[str, Any], number: int, where: str) -> _Rendered:
        if problem := check_row(row, self.mapping):
            raise DataError(_row_message(number, where, problem))
        mapping = self.mapping
        if mapping["type"] == "text":
            return _Rendered(row[mapping["text"]], [])
        if mapping["type"] == "prompt_completion":
            prompt, completion = row[mapping["prompt"]], row[mapping["completion"]]
            if not self.templated:
                text = prompt + completion
                return _Rendered(text, [(len(prompt), len(text))])
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion},
            ]
        else:
            messages = [_clean(message) for message in messages_in(row, mapping["messages"])]
        try:
            text = self._apply(messages)
        except Exception as error:  # the template is the model's own code: its errors are the row's
            raise DataError(
                _row_message(
                    number, where, f"the model's chat template fails on it ({_one_line(error)})"
                )
            ) from error
        if not self.masked:
            return _Rendered(text, [])
        spans = self._assistant_spans(messages, text)
        if spans is None:
            raise DataError(
                _row_message(
                    number,
                    where,
                    "an assistant turn cannot be found in what the chat template renders, so it "
                    "cannot be told apart from the prompt. Set train_on_responses_only = false "
                    "to train on whole conversations.",
                )
            )
        return _Rendered(text, spans)

    def _apply(self, messages: list[dict[str, Any]], *, generation_prompt: bool = False) -> str:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        if not isinstance(text, str):
            raise TypeError(f"the chat template returned {type(text).__name__}, not text")
        return text

    def _assistant_spans(
        self, messages: list[dict[str, Any]], text: str
    ) -> list[tuple[int, int]] | None:
        """Each assistant turn's characters in ``text``: its content and end-of-turn token.

        A turn starts where rendering the conversation before it with a generation prompt
        ends, and ends where rendering through it ends (less trailing whitespace). Templates
        that render earlier turns differently once later ones follow (dropping reasoning, say)
        break that prefix property; then the turn's content is searched for instead.
        """
        spans: list[tuple[int, int]] = []
        cursor = 0
        for index, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            span = self._prefix_span(messages, index, text, cursor) or self._search_span(
                message, text, cursor
            )
            if span is None:
                return None
            spans.append(span)
            cursor = span[1]
        return spans

    def _prefix_span(
        self, messages: list[dict[str, Any]], index: int, text: str, cursor: int
    ) -> tuple[int, int] | None:
        try:
            before = self._apply(messages[:index], generation_prompt=True)
            through = self._apply(messages[: index + 1])
        except Exception:  # e.g. a template that refuses an empty conversation: search instead
            return None
        end = len(through.rstrip())
        if len(before) < cursor or end <= len(before):
            return None
        if not (text.startswith(before) and text.startswith(through)):
            return None
        return len(before), end

    def _search_span(
        self, message: dict[str, Any], text: str, cursor: int
    ) -> tuple[int, int] | None:
        content = message.get("content")
        if not isinstance(content, str) or not content:
            return None
        start = text.find(content, cursor)
        if start < 0:
            return None
        end = start + len(content)
        eos = self.tokenizer.eos_token
        if isinstance(eos, str) and eos and text.startswith(eos, end):
            end += len(eos)
        return start, end


def _rows(dataset: datasets.Dataset, chosen: list[int]) -> list[dict[str, Any]]:
    """The chosen rows as dicts, read in one go (a column at a time is what Arrow is fast at)."""
    columns: dict[str, list[Any]] = dataset[chosen]
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    """Drop keys set to None: Arrow gives every row the keys any row has, filled with None,
    and templates test keys with ``is defined``. ``content`` stays, as templates read it."""
    return {key: value for key, value in message.items() if value is not None or key == "content"}


def _span_labels(
    ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> list[int]:
    """Keep the label of every token that overlaps a span; mask the rest."""
    labels = [IGNORE_INDEX] * len(ids)
    current = 0
    for position, (start, end) in enumerate(offsets):
        while current < len(spans) and spans[current][1] <= start:
            current += 1
        if current == len(spans):
            break
        if end > spans[current][0]:
            labels[position] = ids[position]
    return labels
