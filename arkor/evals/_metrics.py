"""The built-in metrics, and custom ones, as plain functions of an answer and its reference.

Every metric scores one answer in [0, 1]; a run's figure is the mean over its rows. They
are plain Python so the worker (built-ins), the client (custom metrics, which are the
user's code and so never run on a plane) and Studio all score alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arkor.cloud import EvalSample, EvalScore
from arkor.config import BUILTIN_METRICS

MIN_TRUSTED_ROWS = 20
"""Below this many rows one row moves a metric by more than 5 points: the output says so."""

_WORD = re.compile(r"\w+")
_NOT_JSON = object()

CustomMetric = Callable[[str, str, dict[str, Any]], Any]
"""``function(prediction, reference, row) -> float | dict[str, float]``."""


def exact_match(prediction: str, reference: str) -> float:
    """1 when the answer is the reference, surrounding whitespace aside."""
    return float(prediction.strip() == reference.strip())


def json_valid(prediction: str, reference: str) -> float:
    """1 when the whole answer (whitespace trimmed) parses as JSON."""
    return float(_parsed(prediction) is not _NOT_JSON)


def contains(prediction: str, reference: str) -> float:
    """1 when the answer contains the reference, ignoring case."""
    return float(reference.strip().casefold() in prediction.casefold())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure over words: the longest common subsequence against both lengths.

    Words are ``\\w+`` runs, case-folded, so accented and non-Latin text counts as words
    (the usual ASCII-only tokenizer would drop them).
    """
    predicted = _WORD.findall(prediction.casefold())
    wanted = _WORD.findall(reference.casefold())
    if not predicted or not wanted:
        return float(predicted == wanted)
    common = _lcs(predicted, wanted)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def json_match(prediction: str, reference: str) -> float:
    """The share of the reference's JSON fields the answer gets exactly right (0 if not JSON)."""
    keys = json_match_keys(prediction, reference)
    if not keys:
        return 0.0
    return sum(keys.values()) / len(keys)


def json_match_keys(prediction: str, reference: str) -> dict[str, float]:
    """Each top-level key of a JSON object reference → 1 when the answer has the same value.

    A reference that is not a JSON object is one field, ``""``, compared whole.
    """
    wanted = _parsed(reference)
    got = _parsed(prediction)
    if not isinstance(wanted, dict):
        return {"": float(wanted is not _NOT_JSON and got == wanted)}
    answer = got if isinstance(got, dict) else {}
    return {key: float(key in answer and answer[key] == value) for key, value in wanted.items()}


BUILTINS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "json_valid": json_valid,
    "json_match": json_match,
    "contains": contains,
    "rouge_l": rouge_l,
}
assert tuple(BUILTINS) == BUILTIN_METRICS


def is_builtin(metric: str) -> bool:
    return metric in BUILTINS


def score_sample(
    metrics: Sequence[str], prediction: str | None, reference: str
) -> dict[str, float | None]:
    """Each built-in metric of ``metrics`` on one answer (None when there is no answer)."""
    return {
        metric: None if prediction is None else BUILTINS[metric](prediction, reference)
        for metric in metrics
        if metric in BUILTINS
    }


def summarize(metrics: Sequence[str], samples: Sequence[EvalSample]) -> list[EvalScore]:
    """The mean of each built-in metric over the samples, for base and adapter.

    ``json_match`` also gets each reference key's precision (over the rows that have it).
    """
    scores: list[EvalScore] = []
    for metric in metrics:
        if metric not in BUILTINS:
            continue
        keys = _key_precision(samples) if metric == "json_match" else None
        scores.append(
            EvalScore(
                name=metric,
                base=_mean(sample.scores.get(metric, {}).get("base") for sample in samples),
                adapter=_mean(sample.scores.get(metric, {}).get("adapter") for sample in samples),
                count=len(samples),
                keys=keys,
            )
        )
    return scores


def custom_scores(
    target: str, function: CustomMetric, samples: Sequence[EvalSample]
) -> list[EvalScore]:
    """Run a custom metric over every sample's answers; a dict result gives one score per key.

    The metric is named after its target (``pkg.mod:f1``), and ``pkg.mod:f1.recall`` for a
    key of a dict result. A value that is not a finite number raises :class:`ValueError`.
    """
    per_name: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for side, prediction in (("base", sample.base), ("adapter", sample.adapter)):
            if prediction is None:
                continue
            result = function(prediction, sample.reference, dict(sample.row or {}))
            for name, value in _named_values(target, result).items():
                per_name.setdefault(name, {"base": [], "adapter": []})[side].append(value)
    return [
        EvalScore(
            name=name,
            base=_mean(sides["base"]),
            adapter=_mean(sides["adapter"]),
            count=len(samples),
        )
        for name, sides in per_name.items()
    ]


def few_rows_warning(rows: int) -> str | None:
    """What to say when ``rows`` is too small a sample for a percentage to mean much."""
    if rows >= MIN_TRUSTED_ROWS:
        return None
    step = 100 / rows if rows else 100
    return (
        f"Only {rows} held-out row{'s' if rows != 1 else ''} evaluated: one row moves a metric "
        f"by {step:.3g} points, so treat these figures as a rough sign. Hold out more rows "
        f"(trainer.eval.held_out, or a file in trainer.eval.path) for at least {MIN_TRUSTED_ROWS}."
    )


def _named_values(target: str, result: Any) -> dict[str, float]:
    values = result if isinstance(result, Mapping) else {"": result}
    named: dict[str, float] = {}
    for key, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"the metric `{target}` returned {value!r}{f' for `{key}`' if key else ''}; "
                "it must return a finite number (or a dict of them)."
            )
        named[f"{target}.{key}" if key else target] = float(value)
    return named


def _key_precision(samples: Sequence[EvalSample]) -> dict[str, dict[str, float | None]]:
    totals: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for side, prediction in (("base", sample.base), ("adapter", sample.adapter)):
            if prediction is None:
                continue
            for key, value in json_match_keys(prediction, sample.reference).items():
                totals.setdefault(key, {"base": [], "adapter": []})[side].append(value)
    return {
        key: {"base": _mean(sides["base"]), "adapter": _mean(sides["adapter"])}
        for key, sides in totals.items()
    }


def _mean(values: Any) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _parsed(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except ValueError:
        return _NOT_JSON


def _lcs(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence, in O(len(first) × len(second)) time."""
    previous = [0] * (len(second) + 1)
    for item in first:
        current = [0]
        for position, other in enumerate(second):
            current.append(
                previous[position] + 1
                if item == other
                else max(previous[position + 1], current[position])
            )
        previous = current
    return previous[-1]
