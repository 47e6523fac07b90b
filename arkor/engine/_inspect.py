"""Show what training makes of sample rows: tokens per row, and which of them are learned.

The rows go through the data stage's own encoder (:mod:`arkor.engine._data`): the same
table building, format detection, rendering, tokenizing and label masking as a job, so
what is shown is what would be trained on. Only the per-row outcome differs: a row
training would refuse is reported with its error instead of failing the whole call.

``python -m arkor.engine._inspect`` is the control plane's helper process for
``POST /v1/data/inspect``: one JSON request per line on stdin, one JSON answer per line on
stdout, until stdin closes; it keeps recently used tokenizers loaded between requests.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arkor._formats import FormatError, detect_mapping, resolve_mapping
from arkor.cloud import (
    DataInspection,
    DataInspectRequest,
    InspectedDetail,
    InspectedRow,
    InspectedToken,
)
from arkor.engine._data import (
    DEFAULT_MAX_LENGTH,
    IGNORE_INDEX,
    DataError,
    EncodedRow,
    _check_columns,
    _Encoder,
    rows_table,
)
from arkor.errors import ArkorError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

WHERE = "the rows sent"
"""How error messages name the rows being inspected."""
TOKENIZER_CACHE_SIZE = 3
"""Tokenizers kept loaded, keyed by (model, revision): loading one takes a second or more."""


@dataclass(frozen=True)
class RowReport:
    """One row: ``tokens`` before truncation, ``learned`` after it; or the row's ``error``."""

    tokens: int = 0
    learned: int = 0
    truncated: bool = False
    error: str | None = None


@dataclass(frozen=True)
class TokenPiece:
    """One token of the detail row: its piece of the rendered text, and whether it is learned."""

    text: str
    learned: bool


@dataclass(frozen=True)
class RowsInspection:
    """What :func:`inspect_rows` found; ``detail`` is None when that row has an error."""

    format: dict[str, str]
    max_length: int
    rows: list[RowReport]
    detail: list[TokenPiece] | None


def inspect_rows(
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Mapping[str, Any]],
    *,
    dataset_format: str | Mapping[str, Any] | None,
    max_length: int | None,
    train_on_responses_only: bool | None,
    detail: int,
) -> RowsInspection:
    """Tokenize and mask ``rows`` exactly as training would, and report each one.

    Raises :class:`~arkor.engine._data.DataError` only for what stops every row (no format
    fits the first row, a mapped column no row has, a chat format on a model without a
    chat template); a single bad row becomes that row's ``error``.
    """
    if not rows:
        raise DataError(f"There are no rows in {WHERE}: send at least one row to inspect.")
    dataset = rows_table(rows, WHERE)
    try:
        mapping = resolve_mapping(dataset_format) or detect_mapping(dataset[0])
    except FormatError as error:
        raise DataError(f"Cannot use {WHERE}: {error.message}") from None
    _check_columns(dataset, mapping, WHERE)
    encoder = _Encoder(
        tokenizer,
        mapping,
        max_length=max_length or DEFAULT_MAX_LENGTH,
        responses_only=train_on_responses_only is not False,
    )
    encoded = encoder.encode_each(dataset, WHERE)
    chosen = encoded[detail] if 0 <= detail < len(encoded) else None
    return RowsInspection(
        format=mapping,
        max_length=encoder.max_length,
        rows=[_report(row, encoder.max_length) for row in encoded],
        detail=_pieces(tokenizer, chosen, encoder.max_length)
        if isinstance(chosen, EncodedRow)
        else None,
    )


def _report(row: EncodedRow | DataError, max_length: int) -> RowReport:
    if isinstance(row, DataError):
        return RowReport(error=str(row))
    kept = row.labels[:max_length]
    return RowReport(
        tokens=len(row.input_ids),
        learned=len(kept) - kept.count(IGNORE_INDEX),
        truncated=len(row.input_ids) > max_length,
    )


def _pieces(
    tokenizer: PreTrainedTokenizerBase, row: EncodedRow, max_length: int
) -> list[TokenPiece]:
    """Each token's piece of the rendered text, so the pieces concatenate back to it.

    With offsets, a token takes the text from where the previous one ended up to its own
    end (spaces a tokenizer leaves out of offsets go to the token they precede, and the
    second half of a character split over two tokens is empty); the text's tail goes to
    the last token. A token with no characters of its own that the tokenizer added (a
    BOS, an appended EOS) shows as the token itself. Without offsets (a slow tokenizer)
    each token is decoded alone.
    """
    learned = [label != IGNORE_INDEX for label in row.labels[:max_length]]
    learned += [False] * (len(row.input_ids) - len(learned))
    if row.offsets is None:
        return [
            TokenPiece(str(tokenizer.decode([token])), flag)
            for token, flag in zip(row.input_ids, learned, strict=True)
        ]
    special = set(tokenizer.all_special_ids)
    texts: list[str] = []
    cursor = 0
    last_placed: int | None = None
    for position, token in enumerate(row.input_ids):
        start, end = row.offsets[position] if position < len(row.offsets) else (cursor, cursor)
        if end <= start and end <= cursor and token in special:
            texts.append(str(tokenizer.convert_ids_to_tokens(token)))
            continue
        texts.append(row.text[cursor:end] if end > cursor else "")
        cursor = max(cursor, end)
        last_placed = position
    if texts and cursor < len(row.text):
        texts[-1 if last_placed is None else last_placed] += row.text[cursor:]
    return [TokenPiece(text, flag) for text, flag in zip(texts, learned, strict=True)]


# The helper process: a wire request in, the wire answer out, with tokenizers kept loaded.

_tokenizers: OrderedDict[tuple[str, str | None], PreTrainedTokenizerBase] = OrderedDict()
_tokenizers_lock = threading.Lock()


def inspect_request(request: DataInspectRequest) -> DataInspection:
    """Answer ``POST /v1/data/inspect``: load the model's tokenizer as training does, inspect."""
    tokenizer = tokenizer_for(request.model, _revision(request))
    found = inspect_rows(
        tokenizer,
        request.rows,
        dataset_format=request.dataset_format,
        max_length=request.max_length,
        train_on_responses_only=request.train_on_responses_only,
        detail=request.detail,
    )
    return DataInspection(
        format=found.format,
        max_length=found.max_length,
        rows=[
            InspectedRow(
                tokens=row.tokens, learned=row.learned, truncated=row.truncated, error=row.error
            )
            for row in found.rows
        ],
        detail=None
        if found.detail is None
        else InspectedDetail(
            index=request.detail,
            tokens=[
                InspectedToken(text=piece.text, learned=piece.learned) for piece in found.detail
            ],
        ),
    )


def tokenizer_for(model: str, revision: str | None) -> PreTrainedTokenizerBase:
    """The tokenizer a job on ``model`` trains with (at the Hub ``revision``), kept loaded."""
    from arkor.engine._models import load_tokenizer, locate_model, resolve_located

    key = (model, revision)
    with _tokenizers_lock:
        if (cached := _tokenizers.get(key)) is not None:
            _tokenizers.move_to_end(key)
            return cached
    tokenizer = load_tokenizer(resolve_located(locate_model(model), revision=revision))
    with _tokenizers_lock:
        _tokenizers[key] = tokenizer
        while len(_tokenizers) > TOKENIZER_CACHE_SIZE:
            _tokenizers.popitem(last=False)
    return tokenizer


def _revision(request: DataInspectRequest) -> str | None:
    pin = request.model_pin
    return pin.revision if pin is not None and pin.kind == "hub" else None


def main() -> int:
    """Answer requests until stdin closes (see the module docstring).

    The answers keep the real stdout to themselves: whatever a library prints goes to stderr.
    """
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        answers.write(json.dumps(_answer(line)) + "\n")
        answers.flush()
    return 0


def _answer(line: str) -> dict[str, Any]:
    """``{"inspection": ...}``, ``{"error": ...}`` for what the caller can fix, else ``{"failure": ...}``."""
    try:
        request = DataInspectRequest.model_validate_json(line)
        return {"inspection": inspect_request(request).to_wire()}
    except ArkorError as error:  # the model or the rows, as training would report them
        return {"error": str(error)}
    except Exception:  # a fault of this code or a library: the plane logs it
        return {"failure": traceback.format_exc()}


if __name__ == "__main__":
    sys.exit(main())
