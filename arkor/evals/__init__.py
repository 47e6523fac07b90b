"""Evaluation of an adapter against its base: metrics, held-out rows, the comparison table.

Plain Python, no model code: the worker scores built-in metrics with it, the client
runs custom metrics (the user's code, which never runs on a plane) and prints the
table, and Studio shows the same numbers. Generation lives in the engine.
"""

from arkor.evals._metrics import (
    BUILTINS,
    MIN_TRUSTED_ROWS,
    CustomMetric,
    contains,
    custom_scores,
    exact_match,
    few_rows_warning,
    is_builtin,
    json_match,
    json_match_keys,
    json_valid,
    rouge_l,
    score_sample,
    summarize,
)
from arkor.evals._rows import (
    RowError,
    choose_rows,
    hold_out,
    pruned_row,
    row_sha256,
    rows_digest,
    split_row,
)
from arkor.evals._table import TableRow, table_rows, with_custom_metrics

__all__ = [
    "BUILTINS",
    "MIN_TRUSTED_ROWS",
    "CustomMetric",
    "RowError",
    "TableRow",
    "choose_rows",
    "contains",
    "custom_scores",
    "exact_match",
    "few_rows_warning",
    "hold_out",
    "is_builtin",
    "json_match",
    "json_match_keys",
    "json_valid",
    "pruned_row",
    "rouge_l",
    "row_sha256",
    "rows_digest",
    "score_sample",
    "split_row",
    "summarize",
    "table_rows",
    "with_custom_metrics",
]
