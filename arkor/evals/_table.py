"""The base-vs-adapter table every surface shows: ``arkor start``, ``arkor eval``, jobs, Studio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arkor.cloud import EvalCompleted
from arkor.evals._metrics import MIN_TRUSTED_ROWS, CustomMetric, custom_scores


@dataclass(frozen=True)
class TableRow:
    """One line of the table: a metric (or ``json_match[key]``) and its two figures."""

    metric: str
    base: str
    adapter: str
    change: str


def table_rows(event: EvalCompleted) -> list[TableRow]:
    """The event's metrics as text: percentages, or ``k/n`` counts when rows are too few.

    A percentage of 8 rows would claim a precision the sample does not have, so below
    :data:`MIN_TRUSTED_ROWS` a 0/1 metric is shown as the rows it got right, ``5/8``.
    """
    rows: list[TableRow] = []
    for score in event.metrics:
        rows.append(_row(score.name, score.base, score.adapter, score.count))
        for key, sides in (score.keys or {}).items():
            if key:
                rows.append(
                    _row(
                        f"{score.name}[{key}]", sides.get("base"), sides.get("adapter"), score.count
                    )
                )
    return rows


def with_custom_metrics(event: EvalCompleted, metrics: Mapping[str, CustomMetric]) -> EvalCompleted:
    """The event with each custom metric (target → function) scored on its samples."""
    if not metrics or event.error is not None:
        return event
    extra = [
        score
        for target, function in metrics.items()
        for score in custom_scores(target, function, event.samples)
    ]
    return event.model_copy(update={"metrics": [*event.metrics, *extra]})


def _row(name: str, base: float | None, adapter: float | None, count: int) -> TableRow:
    few = count < MIN_TRUSTED_ROWS
    return TableRow(
        metric=name,
        base=_figure(base, count, few),
        adapter=_figure(adapter, count, few),
        change=_change(base, adapter, few),
    )


def _figure(value: float | None, count: int, few: bool) -> str:
    if value is None:
        return "-"
    right = value * count
    if few and abs(right - round(right)) < 1e-9:
        return f"{round(right)}/{count}"
    return f"{value * 100:.1f}%"


def _change(base: float | None, adapter: float | None, few: bool) -> str:
    if base is None or adapter is None:
        return "-"
    points = (adapter - base) * 100
    return f"{points:+.1f} pts" + (" (few rows)" if few else "")
