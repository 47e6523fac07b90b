"""The base-vs-adapter evaluation, shared by the worker (after training) and the inference
worker (``arkor eval`` later), so both give the same numbers for the same rows.

The held-out rows travel as ``eval/held-out.jsonl``, one row a line in order:
``{"number", "sha256", "prompt", "reference", "row"}``. The run writes every held-out
row there (``prompt`` and ``reference`` null for a row with no answer to compare with);
an evaluation asks a seeded choice of ``rows`` of the others, greedy, base and adapter,
and scores the built-in metrics (custom ones are the user's code, run by the client).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arkor._fs import atomic_write_chunks
from arkor.cloud import EvalCompleted, EvalSample, EvalSpec
from arkor.evals import choose_rows, few_rows_warning, rows_digest, score_sample, summarize

if TYPE_CHECKING:
    from arkor.engine._infer import InferenceEngine

HELD_OUT_PATH = "eval/held-out.jsonl"
"""Where a run keeps its held-out rows, relative to its output folder (an artifact)."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class HeldOutRow:
    """One held-out row, split into what the model is asked and the answer it should give."""

    number: int
    """The row's 1-based position in its source (the dataset, its split or the eval file)."""
    sha256: str
    prompt: list[dict[str, Any]] | None
    """What the model is asked; None for a row with no answer to compare with (not asked)."""
    reference: str | None
    row: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "sha256": self.sha256,
            "prompt": self.prompt,
            "reference": self.reference,
            "row": self.row,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> HeldOutRow:
        return cls(
            number=int(data["number"]),
            sha256=str(data["sha256"]),
            prompt=list(data["prompt"]) if data.get("prompt") is not None else None,
            reference=str(data["reference"]) if data.get("reference") is not None else None,
            row=dict(data.get("row") or {}),
        )


def write_held_out(path: Path, rows: Iterable[HeldOutRow]) -> None:
    """Write the rows as JSON lines, replacing ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_chunks(
        path,
        (
            (json.dumps(row.to_wire(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            for row in rows
        ),
    )


def read_held_out(path: Path) -> list[HeldOutRow]:
    """The rows :func:`write_held_out` wrote, in order."""
    with path.open(encoding="utf-8") as handle:
        return [HeldOutRow.from_wire(json.loads(line)) for line in handle if line.strip()]


@dataclass(frozen=True)
class EvalTarget:
    """What is evaluated: an adapter folder on its base, and how the event names it."""

    job_id: str
    base_model: str
    base_revision: str | None
    adapter: Path
    step: int | None = None
    checkpoint: int | None = None
    final: bool = False
    requested: bool = False


def evaluate(
    items: Sequence[HeldOutRow],
    spec: EvalSpec,
    engine: InferenceEngine,
    target: EvalTarget,
    *,
    seed: int,
    rows: int | None = None,
    base_answers: MutableMapping[str, str] | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> EvalCompleted:
    """Answer a seeded choice of ``rows`` (default ``spec.rows``) held-out rows with the base
    and the adapter, greedy, and score them.

    ``base_answers`` (by row hash) is read and filled, so evaluating several checkpoints
    asks the base once. ``progress(done, total)`` counts answers; a set ``stop`` raises
    :class:`~arkor.engine._infer.GenerationStopped` between batches.
    """
    started = time.perf_counter()
    askable = [item for item in items if item.prompt is not None and item.reference is not None]
    picked = choose_rows(range(len(askable)), rows or spec.rows, seed)
    chosen = [askable[index] for index in picked]
    known = base_answers if base_answers is not None else {}
    missing = [item for item in chosen if item.sha256 not in known]
    total = len(missing) + len(chosen)
    done = 0

    def step(finished: int, _: int) -> None:
        if progress is not None:
            progress(done + finished, total)

    def answer(adapter: Path | None, asked: Sequence[HeldOutRow]) -> list[str]:
        if not asked:
            return []
        return engine.generate_batch(
            target.base_model,
            target.base_revision,
            adapter,
            [item.prompt or [] for item in asked],
            max_new_tokens=spec.max_new_tokens,
            batch_size=spec.batch_size,
            progress=step,
            stop=stop,
        )

    known.update(zip((item.sha256 for item in missing), answer(None, missing), strict=True))
    done = len(missing)
    tuned = answer(target.adapter, chosen)
    samples = [
        _sample(spec.metrics, item, known[item.sha256], adapter)
        for item, adapter in zip(chosen, tuned, strict=True)
    ]
    notes = [few] if (few := few_rows_warning(len(samples))) else []
    if skipped := len(items) - len(askable):
        notes.insert(
            0,
            f"{skipped} of the {len(items)} held-out rows have no answer to compare with (no "
            "assistant turn after a prompt) and were not evaluated.",
        )
    return EvalCompleted(
        job_id=target.job_id,
        step=target.step,
        checkpoint=target.checkpoint,
        final=target.final,
        requested=target.requested,
        rows=len(samples),
        held_out_rows=len(items),
        held_out_sha256=rows_digest(item.sha256 for item in items),
        metrics=summarize(spec.metrics, samples),
        samples=samples,
        warnings=notes,
        seconds=round(time.perf_counter() - started, 3),
    )


def failed_eval(target: EvalTarget, error: BaseException) -> EvalCompleted:
    """The event of an evaluation that could not run: what went wrong, no metrics."""
    from arkor.errors import ArkorError

    message = str(error) if isinstance(error, ArkorError) else f"{type(error).__name__}: {error}"
    return EvalCompleted(
        job_id=target.job_id,
        step=target.step,
        checkpoint=target.checkpoint,
        final=target.final,
        requested=target.requested,
        error=f"The evaluation could not run: {message}",
    )


def _sample(metrics: Sequence[str], item: HeldOutRow, base: str, adapter: str) -> EvalSample:
    assert item.prompt is not None and item.reference is not None
    base_scores = score_sample(metrics, base, item.reference)
    adapter_scores = score_sample(metrics, adapter, item.reference)
    return EvalSample(
        number=item.number,
        sha256=item.sha256,
        prompt=item.prompt,
        reference=item.reference,
        base=base,
        adapter=adapter,
        scores={
            metric: {"base": base_scores[metric], "adapter": adapter_scores[metric]}
            for metric in base_scores
        },
        row=item.row,
    )
