"""How Studio describes an ``eval.completed`` event for the run page, without a run: the
table, the rows whose answers differ, and a custom metric that fails shown, not raised."""

from __future__ import annotations

from typing import Any

from arkor.cloud import EvalCompleted, EvalSample, EvalScore
from arkor.studio._studio import describe_eval


def sample(number: int, base: str | None, adapter: str) -> EvalSample:
    return EvalSample(
        number=number,
        sha256=f"{number:064x}",
        prompt=[{"role": "user", "content": f"question {number}"}],
        reference="yes",
        base=base,
        adapter=adapter,
    )


EVENT = EvalCompleted(
    job_id="job_1",
    step=6,
    final=True,
    rows=4,
    held_out_rows=4,
    metrics=[EvalScore(name="exact_match", base=0.25, adapter=0.75, count=4)],
    samples=[
        sample(1, "no", "yes"),
        sample(2, "yes", " yes\n"),  # the same answer but for surrounding whitespace
        sample(3, "yes", "yes"),
        sample(4, "maybe", "no"),
    ],
)


def answered_yes(prediction: str, reference: str, row: dict[str, Any]) -> float:
    return 1.0 if prediction.strip() == "yes" else 0.0


def broken(prediction: str, reference: str, row: dict[str, Any]) -> float:
    raise KeyError("label")


def test_the_description_has_the_table_and_the_rows_whose_answers_differ() -> None:
    described = describe_eval(EVENT, {"demo.metrics:yes": answered_yes})
    assert described["differing"] == [0, 3]
    assert described["table"] == [
        {
            "metric": "exact_match",
            "base": "1/4",
            "adapter": "3/4",
            "change": "+50.0 pts (few rows)",
        },
        {
            "metric": "demo.metrics:yes",
            "base": "2/4",
            "adapter": "3/4",
            "change": "+25.0 pts (few rows)",
        },
    ]
    assert described["notes"] == []
    assert described["samples"][0]["prompt"][-1]["content"] == "question 1"
    assert described["heldOutRows"] == 4
    # an eval without the base's answers has nothing to compare
    adapter_only = EVENT.model_copy(update={"samples": [sample(1, None, "yes")]})
    assert describe_eval(adapter_only, {})["differing"] == []


def test_a_custom_metric_that_fails_is_left_out_and_said() -> None:
    described = describe_eval(
        EVENT, {"demo.metrics:broken": broken, "demo.metrics:yes": answered_yes}
    )
    assert [row["metric"] for row in described["table"]] == ["exact_match", "demo.metrics:yes"]
    assert described["notes"] == ["The custom metric demo.metrics:broken failed: KeyError: 'label'"]
