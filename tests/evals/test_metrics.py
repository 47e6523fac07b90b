"""The built-in metrics, custom metrics and the table: plain functions, checked by value."""

from __future__ import annotations

import math

import pytest

from arkor.cloud import EvalCompleted, EvalSample, EvalScore
from arkor.evals import (
    MIN_TRUSTED_ROWS,
    contains,
    custom_scores,
    exact_match,
    few_rows_warning,
    json_match,
    json_match_keys,
    json_valid,
    rouge_l,
    score_sample,
    summarize,
    table_rows,
    with_custom_metrics,
)

TICKET = '{"category": "billing", "priority": "high", "summary": "Charged twice."}'


def sample(base: str | None, adapter: str, reference: str = TICKET) -> EvalSample:
    metrics = ["json_valid", "json_match", "exact_match"]
    return EvalSample(
        number=1,
        sha256="0" * 64,
        prompt=[{"role": "user", "content": "q"}],
        reference=reference,
        base=base,
        adapter=adapter,
        scores={
            metric: {
                "base": score_sample(metrics, base, reference)[metric],
                "adapter": score_sample(metrics, adapter, reference)[metric],
            }
            for metric in metrics
        },
        row={"id": 7},
    )


def test_exact_match_ignores_surrounding_whitespace_only() -> None:
    assert exact_match("  Paris\n", "Paris") == 1.0
    assert exact_match("paris", "Paris") == 0.0


def test_json_valid_needs_the_whole_answer_to_parse() -> None:
    assert json_valid(' {"a": 1} ', "") == 1.0
    assert json_valid('Sure! {"a": 1}', "") == 0.0
    assert json_valid("", "") == 0.0


def test_contains_ignores_case() -> None:
    assert contains("The answer is PARIS.", "paris") == 1.0
    assert contains("Lyon", "Paris") == 0.0


def test_rouge_l_is_the_lcs_f_measure_over_words() -> None:
    # LCS "the cat on the mat" = 5 of 6 words each way: P = R = F = 5/6
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("a b c d", "a b") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert rouge_l("Le chat", "le chat") == 1.0
    assert rouge_l("", "") == 1.0
    assert rouge_l("x", "") == 0.0


def test_rouge_l_counts_accented_words() -> None:
    assert rouge_l("¿Dónde está la estación?", "¿Dónde está la estación?") == 1.0
    assert rouge_l("Dónde está", "Donde esta") == 0.0


def test_json_match_scores_each_reference_field() -> None:
    answer = '{"category": "billing", "priority": "low", "summary": "x"}'
    assert json_match_keys(answer, TICKET) == {"category": 1.0, "priority": 0.0, "summary": 0.0}
    assert json_match(answer, TICKET) == pytest.approx(1 / 3)
    assert json_match("not json", TICKET) == 0.0
    assert json_match(TICKET, TICKET) == 1.0


def test_json_match_of_a_non_object_reference_compares_the_whole_value() -> None:
    assert json_match_keys("[1, 2]", "[1, 2]") == {"": 1.0}
    assert json_match_keys("[1]", "[1, 2]") == {"": 0.0}


def test_summarize_means_each_metric_and_gives_json_match_per_key() -> None:
    samples = [sample("prose", TICKET), sample("prose", '{"category": "billing"}')]
    scores = {score.name: score for score in summarize(["json_valid", "json_match"], samples)}
    assert scores["json_valid"].base == 0.0
    assert scores["json_valid"].adapter == 1.0
    assert scores["json_valid"].count == 2
    keys = scores["json_match"].keys or {}
    assert keys["category"] == {"base": 0.0, "adapter": 1.0}
    assert keys["priority"] == {"base": 0.0, "adapter": 0.5}


def test_custom_metric_dict_results_become_named_scores() -> None:
    def lengths(prediction: str, reference: str, row: dict[str, object]) -> dict[str, float]:
        assert row == {"id": 7}
        return {"short": float(len(prediction) < 10), "long": float(len(prediction) >= 10)}

    scores = custom_scores("pkg.mod:lengths", lengths, [sample("prose", TICKET)])
    by_name = {score.name: score for score in scores}
    assert by_name["pkg.mod:lengths.short"].base == 1.0
    assert by_name["pkg.mod:lengths.short"].adapter == 0.0
    assert by_name["pkg.mod:lengths.long"].adapter == 1.0


@pytest.mark.parametrize("bad", [math.nan, "0.5", None, True])
def test_custom_metric_must_return_finite_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match=r"pkg\.mod:f"):
        custom_scores("pkg.mod:f", lambda p, r, row: bad, [sample("a", "b")])


def test_with_custom_metrics_appends_to_the_event() -> None:
    event = EvalCompleted(
        job_id="j", rows=1, metrics=[EvalScore(name="exact_match", base=0, adapter=1, count=1)],
        samples=[sample("a", TICKET)],
    )  # fmt: skip
    scored = with_custom_metrics(event, {"pkg.mod:one": lambda p, r, row: 1.0})
    assert [score.name for score in scored.metrics] == ["exact_match", "pkg.mod:one"]


def test_table_shows_counts_not_percentages_for_few_rows() -> None:
    few = EvalCompleted(
        job_id="j", rows=8, metrics=[EvalScore(name="json_valid", base=0.0, adapter=0.625, count=8)]
    )
    (row,) = table_rows(few)
    assert (row.base, row.adapter) == ("0/8", "5/8")
    assert "few rows" in row.change
    many = few.model_copy(
        update={"metrics": [EvalScore(name="json_valid", base=0.25, adapter=0.875, count=32)]}
    )
    (row,) = table_rows(many)
    assert (row.base, row.adapter, row.change) == ("25.0%", "87.5%", "+62.5 pts")


def test_few_rows_warning_only_below_the_threshold() -> None:
    assert few_rows_warning(MIN_TRUSTED_ROWS) is None
    warning = few_rows_warning(8)
    assert warning is not None and "8 held-out rows" in warning and "12.5 points" in warning
