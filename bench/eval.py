"""Evaluation throughput: the engine's batched greedy generation against a plain loop.

    python bench/eval.py [--rows 16] [--batch-size 8] [--max-new-tokens 96] [--steps 20]
                         [--smollm2-steps 10]

On the same held-out rows of the triage template (its chat data, split as a run splits
it), the same model and the same greedy settings:

- ``engine``: ``InferenceEngine.generate_batch`` (length-sorted, left-padded batches of
  ``--batch-size`` rows through ``generate``), what a run's evaluation calls;
- ``loop``: one ``model.generate`` per row, what most evaluation scripts do.

Each prints rows/s, the ratio (target ≥ 2x on CPU) and how many answers agree (greedy
answers should be the same). Then a short training run with an eval block gives what
the evaluation costs as a fraction of the run (and of a 150-step run, the triage
template's default, from the measured step time).

Runs on a tiny random model (its tokenizer trained on the same data, so rows have
realistic token counts; it never stops early, so every answer is ``--max-new-tokens``
long) always, and on SmolLM2-135M-Instruct when it is in the local model store
(``arkor models import``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATA = REPO / "templates" / "triage" / "data" / "train.jsonl"
TEMPLATE_STEPS = 150
SEED = 42


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def held_out_prompts(count: int) -> list[list[dict[str, Any]]]:
    """The prompts of ``count`` rows a run would hold out of the triage data (10 %, seed 42)."""
    from arkor.evals import choose_rows, hold_out, split_row

    rows = read_rows(DATA)
    held = choose_rows(hold_out(len(rows), 0.1, SEED)[1], count, SEED)
    mapping = {"type": "chat", "messages": "messages"}
    return [split_row(rows[index], mapping)[0] for index in held]


def bench_generation(model: str, args: argparse.Namespace) -> None:
    import torch

    from arkor.engine._device import choose_placement
    from arkor.engine._infer import InferenceEngine, _stop_ids
    from arkor.engine._models import load_model, load_tokenizer, resolve_model

    prompts = held_out_prompts(args.rows)
    engine = InferenceEngine()
    engine.generate_batch(model, None, None, prompts[:1], max_new_tokens=2, batch_size=1)
    started = time.perf_counter()
    batched = engine.generate_batch(
        model, None, None, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )
    engine_seconds = time.perf_counter() - started
    del engine

    resolved = resolve_model(model)
    tokenizer, loaded = load_tokenizer(resolved), load_model(resolved, choose_placement())
    loaded.eval()
    stops = sorted(_stop_ids(tokenizer, loaded))

    def plain(messages: list[dict[str, Any]], tokens: int) -> str:
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            output = loaded.generate(
                **inputs,
                max_new_tokens=tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id or stops[0],
            )
        return str(
            tokenizer.decode(
                output[0, inputs["input_ids"].shape[1] :],
                skip_special_tokens=True,
                clean_up_tokenization_spaces=False,
            )
        )

    plain(prompts[0], 2)
    started = time.perf_counter()
    looped = [plain(messages, args.max_new_tokens) for messages in prompts]
    loop_seconds = time.perf_counter() - started

    same = sum(a == b for a, b in zip(batched, looped, strict=True))
    engine_rate, loop_rate = len(prompts) / engine_seconds, len(prompts) / loop_seconds
    print(
        f"\n== generation: {model} ({len(prompts)} held-out rows, greedy, "
        f"{args.max_new_tokens} new tokens at most, batches of {args.batch_size})"
    )
    print(f"   {'run':<8}{'seconds':>9}{'rows/s':>9}")
    print(f"   {'engine':<8}{engine_seconds:>9.2f}{engine_rate:>9.2f}")
    print(f"   {'loop':<8}{loop_seconds:>9.2f}{loop_rate:>9.2f}")
    print(
        f"   engine vs loop: {engine_rate / loop_rate:.2f}x rows/s; "
        f"{same}/{len(prompts)} answers identical"
    )


def bench_run(model: str, args: argparse.Namespace, steps: int) -> None:
    from arkor.cloud import EvalCompleted, JobConfig
    from arkor.engine import ListSink, TrainingRun, train

    config = JobConfig.model_validate(
        {
            "model": model,
            "dataset_source": {"type": "file", "upload_id": "bench"},
            "max_steps": steps,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "logging_steps": steps,
            "save_steps": steps + 1,
            "lora_alpha": 32,
            "max_length": 512,
            "seed": SEED,
            "eval": {
                "rows": args.rows,
                "metrics": ["json_valid", "json_match"],
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
            },
        }
    )
    sink = ListSink()
    with tempfile.TemporaryDirectory(prefix="arkor-bench-eval-") as workdir:
        started = time.perf_counter()
        outcome = train(
            TrainingRun(
                job_id="bench",
                config=config,
                output_dir=Path(workdir),
                sink=sink,
                dataset_file=DATA,
            )
        )
        total = time.perf_counter() - started
    if outcome.status != "completed":
        print(f"   the run {outcome.status}: {outcome.error}")
        return
    (event,) = [e for e in sink.events if isinstance(e, EvalCompleted)]
    if event.error is not None or event.seconds is None:
        print(f"   the eval failed: {event.error}")
        return
    runtime = float(outcome.metrics.get("trainRuntime") or total - event.seconds)
    per_step = runtime / steps
    at_default = event.seconds / (event.seconds + total - runtime + per_step * TEMPLATE_STEPS)
    scores = ", ".join(f"{s.name} {s.base:.2f} → {s.adapter:.2f}" for s in event.metrics)
    print(f"\n== eval cost: {model}, a {steps}-step run with an eval of {event.rows} rows")
    print(
        f"   run {total:.1f} s (training {runtime:.1f} s), eval {event.seconds:.1f} s: "
        f"{event.seconds / total:.0%} of this run, ~{at_default:.0%} of a "
        f"{TEMPLATE_STEPS}-step run"
    )
    print(f"   {scores}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16, help="held-out rows evaluated")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20, help="training steps on the tiny model")
    parser.add_argument(
        "--smollm2-steps",
        type=int,
        default=10,
        help="training steps on SmolLM2 (about 3-5 s each on 2 CPU cores)",
    )
    args = parser.parse_args()

    from arkor.engine._store import ModelStore
    from tests.utils.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="arkor-tiny-") as tiny:
        texts = [message["content"] for row in read_rows(DATA) for message in row["messages"]]
        models = [(str(build_tiny_model(Path(tiny), vocab_size=4000, corpus=texts)), args.steps)]
        if ModelStore().lookup(SMOLLM2) is not None:
            models.append((SMOLLM2, args.smollm2_steps))
        else:
            print(
                f"({SMOLLM2} is not in the model store; `arkor models import` it to bench it too)"
            )
        for model, steps in models:
            bench_generation(model, args)
            bench_run(model, args, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
