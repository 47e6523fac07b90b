"""Which rows are held out, how a row is named by hash, and how a row becomes a question.

``arkor build`` (for a local file) and the worker choose held-out rows with the same
seeded functions here, so the manifest can record them by hash and the worker can prove
it holds out the same ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from arkor._formats import messages_in


class RowError(ValueError):
    """A row that cannot be asked: it has no answer to compare with."""


def hold_out(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices into (train, held out), the same way for the same seed.

    ``ceil(count × fraction)`` rows are held out, leaving at least one to train on;
    ``count`` must be 2 or more.
    """
    size = min(math.ceil(count * fraction), count - 1)
    held = set(random.Random(seed).sample(range(count), size))
    return [i for i in range(count) if i not in held], sorted(held)


def choose_rows(held_out: Sequence[int], rows: int, seed: int) -> list[int]:
    """At most ``rows`` of the held-out indices: all of them, else a seeded sample, in order."""
    if len(held_out) <= rows:
        return list(held_out)
    return sorted(random.Random(seed).sample(list(held_out), rows))


def row_sha256(row: Mapping[str, Any]) -> str:
    """A row's identity: sha256 of its canonical JSON, keys holding null left out.

    A table reader fills keys a row lacks with null (Arrow gives every row every column),
    so the same row hashes alike whether it was read from JSONL or from a dataset.
    """
    text = json.dumps(pruned_row(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rows_digest(hashes: Iterable[str]) -> str:
    """One digest over a set of row hashes (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode("ascii")).hexdigest()


def split_row(
    row: Mapping[str, Any], mapping: Mapping[str, str]
) -> tuple[list[dict[str, Any]], str]:
    """The conversation up to the row's last answer, and that answer (the reference).

    A chat row is asked everything before its last assistant turn; a prompt/completion
    row its prompt, as one user message. Plain text rows have no answer to compare with.
    """
    kind = mapping["type"]
    if kind == "prompt_completion":
        return [{"role": "user", "content": str(row[mapping["prompt"]])}], str(
            row[mapping["completion"]]
        )
    if kind != "chat":
        raise RowError(
            "text rows have no answer to compare with, so they cannot be evaluated: evaluation "
            "needs chat or prompt/completion rows."
        )
    messages = [
        {key: value for key, value in message.items() if value is not None or key == "content"}
        for message in messages_in(row, mapping["messages"])
    ]
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if message.get("role") == "assistant" and isinstance(message.get("content"), str):
            if position == 0:
                break
            return messages[:position], message["content"]
    raise RowError(
        "the row has no assistant turn after a prompt, so there is no answer to compare with."
    )


def pruned_row(value: Any) -> Any:
    """The row without the keys a table reader filled with null, as its file holds it."""
    if isinstance(value, Mapping):
        return {str(key): pruned_row(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [pruned_row(item) for item in value]
    return value
