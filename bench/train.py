"""Training and inference throughput: the engine against what most users write, in one run.

    python bench/train.py [--steps 30] [--smollm2-steps 8] [--batch-size 8] [--max-length 512]

Training, on the same tokenized rows (the triage template's chat data, ``steps × batch``
rows, so each run makes exactly one pass over the same tokens), the same steps, batch
size, LoRA shape and seed:

- ``engine``: ``arkor.engine.train`` (length-grouped batches, dynamic padding, events);
- ``fixed``: a plain transformers ``Trainer`` + peft script padding every row to
  ``max_length`` (the common script);
- ``dynamic``: the same script with per-batch dynamic padding.

Each prints real (non-padding) tokens/s and the ratio to both baselines, and the loss of
each trained adapter on the same rows. Targets: ≥ 1.5x ``fixed``, ≥ 1.0x ``dynamic``,
final loss within 2 % of ``fixed``.

Inference: time to first token and tokens/s of ``arkor.engine.InferenceEngine`` against
plain ``generate`` on the same prompt, cold (first request, including loading) and warm.

Runs on a tiny random model (its tokenizer trained on the same data, so rows have
realistic token counts) always, and on SmolLM2-135M-Instruct when it is in the local
model store (``arkor models import``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATA = REPO / "templates" / "triage" / "data" / "train.jsonl"


@dataclass
class TrainResult:
    name: str
    tokens_per_second: float
    runtime: float
    loss: float


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def job_config(model: str, args: argparse.Namespace) -> Any:
    from arkor.cloud import JobConfig

    return JobConfig(
        model=model,
        dataset_source={"type": "file", "upload_id": "bench"},
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        logging_steps=args.steps,
        save_steps=args.steps + 1,  # no mid-run checkpoint: the baselines save none either
        lora_r=16,
        lora_alpha=16,
        max_length=args.max_length,
        seed=7,
    )


def run_engine(
    model: str, args: argparse.Namespace, workdir: Path, rows_file: Path
) -> tuple[TrainResult, Path]:
    from arkor.engine import ListSink, TrainingRun, train

    sink = ListSink()
    outcome = train(
        TrainingRun(
            job_id="bench",
            config=job_config(model, args),
            output_dir=workdir / "engine",
            sink=sink,
            dataset_file=rows_file,
        )
    )
    if outcome.status != "completed":
        raise SystemExit(f"engine run {outcome.status}: {outcome.error}")
    metrics = outcome.metrics
    assert outcome.adapter_dir is not None
    return TrainResult(
        "engine", metrics["tokensSeen"] / metrics["trainRuntime"], metrics["trainRuntime"], 0.0
    ), outcome.adapter_dir


def run_plain(
    model: str, args: argparse.Namespace, workdir: Path, *, fixed: bool, examples: list[Any]
) -> tuple[TrainResult, Any]:
    """The script most users write: Trainer + peft, rows padded to max_length (or per batch)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.trainer_callback import PrinterCallback

    from arkor.engine._models import resolve_model

    source = resolve_model(model).source
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(7)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    peft_model = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    collator = (
        DataCollatorForSeq2Seq(
            tokenizer, padding="max_length", max_length=args.max_length, label_pad_token_id=-100
        )
        if fixed
        else DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    )
    trainer = Trainer(
        model=peft_model,
        args=TrainingArguments(
            output_dir=str(workdir / ("fixed" if fixed else "dynamic")),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-4,
            logging_steps=args.steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            use_cpu=True,
            seed=7,
            data_seed=7,
            include_num_input_tokens_seen="non_padding",
        ),
        train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in examples],  # type: ignore[arg-type]
        data_collator=collator,
    )
    trainer.remove_callback(PrinterCallback)
    metrics = trainer.train().metrics
    runtime = metrics["train_runtime"]
    name = "fixed" if fixed else "dynamic"
    return TrainResult(
        name, trainer.state.num_input_tokens_seen / runtime, runtime, 0.0
    ), peft_model


def median_run(runs: list[TrainResult]) -> TrainResult:
    """The run with the median throughput (runs of one configuration differ only in timing)."""
    return sorted(runs, key=lambda run: run.tokens_per_second)[len(runs) // 2]


def mean_loss(model: Any, tokenizer: Any, examples: list[Any]) -> float:
    """Loss per labelled token of ``model`` on ``examples``: the same yardstick for every run."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), 8):
            chunk = examples[start : start + 8]
            batch = collator([{"input_ids": e.input_ids, "labels": e.labels} for e in chunk])
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != -100).sum())
    return total / count


def bench_training(model: str, args: argparse.Namespace) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from arkor.engine._data import prepare_data
    from arkor.engine._models import load_tokenizer, resolve_model

    resolved = resolve_model(model)
    tokenizer = load_tokenizer(resolved)
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as tmp:
        workdir = Path(tmp)
        # Exactly one pass over the same rows for every run: a length-grouped sampler only
        # reorders them, so all three train on the same tokens.
        rows_file = workdir / "rows.jsonl"
        rows = read_rows(DATA)[: args.steps * args.batch_size]
        rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        data = prepare_data(
            job_config(model, args), tokenizer, dataset_file=rows_file, cache_dir=workdir / "cache"
        )
        probe = data.train[:64]
        warmup = argparse.Namespace(**{**vars(args), "steps": 2})
        run_plain(
            model, warmup, workdir, fixed=False, examples=data.train
        )  # the first run in a process pays for warm-up; no config should
        runs: dict[str, list[TrainResult]] = {"engine": [], "fixed": [], "dynamic": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every run alike
            engine, adapter_dir = run_engine(model, args, workdir, rows_file)
            base = AutoModelForCausalLM.from_pretrained(resolved.source)
            engine.loss = mean_loss(PeftModel.from_pretrained(base, adapter_dir), tokenizer, probe)
            runs["engine"].append(engine)
            for fixed in (True, False):
                result, trained = run_plain(model, args, workdir, fixed=fixed, examples=data.train)
                result.loss = mean_loss(trained, tokenizer, probe)
                runs[result.name].append(result)
        results = [median_run(found) for found in runs.values()]
        engine = results[0]
    by_name = {result.name: result for result in results}
    lengths = [len(example.input_ids) for example in data.train]
    print(f"\n== training: {model}")
    print(
        f"   {len(data.train)} rows, tokens per row median {statistics.median(lengths):.0f} / max {max(lengths)}, "
        f"{args.steps} steps x batch {args.batch_size}, max_length {args.max_length}, median of {args.repeats} run(s)"
    )
    print(
        f"   {'run':<9}{'tokens/s':>10}{'runtime s':>11}{'loss':>9}{'vs fixed':>10}{'vs dynamic':>12}"
    )
    for result in results:
        print(
            f"   {result.name:<9}{result.tokens_per_second:>10.0f}{result.runtime:>11.2f}{result.loss:>9.4f}"
            f"{result.tokens_per_second / by_name['fixed'].tokens_per_second:>9.2f}x"
            f"{result.tokens_per_second / by_name['dynamic'].tokens_per_second:>11.2f}x"
        )
    drift = abs(engine.loss - by_name["fixed"].loss) / by_name["fixed"].loss
    speed_fixed = engine.tokens_per_second / by_name["fixed"].tokens_per_second
    speed_dynamic = engine.tokens_per_second / by_name["dynamic"].tokens_per_second
    print(
        f"   targets: >= 1.5x fixed: {'ok' if speed_fixed >= 1.5 else 'MISSED'}; >= 1.0x dynamic: "
        f"{'ok' if speed_dynamic >= 1.0 else 'MISSED'}; loss within 2 % of fixed: "
        f"{'ok' if drift <= 0.02 else 'MISSED'} ({drift:.2%})"
    )


def bench_inference(model: str, args: argparse.Namespace) -> None:
    import torch

    from arkor.engine import GenerationRequest, InferenceEngine
    from arkor.engine._device import choose_placement
    from arkor.engine._models import load_model, load_tokenizer, resolve_model

    messages = [
        {
            "role": "user",
            "content": "Subject: Charged twice\n\nMy card was charged twice for March.",
        }
    ]
    request = GenerationRequest(
        base_model=model,
        adapter_path=None,
        messages=messages,
        temperature=0.0,
        max_tokens=args.new_tokens,
    )

    def engine_once(engine: Any) -> tuple[float, float, int]:
        start = time.perf_counter()
        first = None
        tokens = 0
        for chunk in engine.stream(request):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        total = time.perf_counter() - start
        return first or total, total, tokens

    def plain_once() -> tuple[float, float, int]:
        start = time.perf_counter()
        resolved = resolve_model(model)
        tokenizer = load_tokenizer(resolved)
        loaded = load_model(resolved, choose_placement())
        return plain_generate(loaded, tokenizer, start)

    def plain_generate(
        loaded: Any, tokenizer: Any, start: float | None = None
    ) -> tuple[float, float, int]:
        start = time.perf_counter() if start is None else start
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            loaded.generate(**inputs, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - start
            output = loaded.generate(**inputs, max_new_tokens=args.new_tokens, do_sample=False)
        return (
            first,
            time.perf_counter() - start,
            int(output.shape[1] - inputs["input_ids"].shape[1]),
        )

    engine = InferenceEngine()
    rows = [("engine cold", engine_once(engine)), ("engine warm", engine_once(engine))]
    rows.append(("generate cold", plain_once()))
    resolved = resolve_model(model)
    tokenizer, loaded = load_tokenizer(resolved), load_model(resolved, choose_placement())
    plain_generate(loaded, tokenizer)
    rows.append(("generate warm", plain_generate(loaded, tokenizer)))
    print(f"\n== inference: {model} ({args.new_tokens} new tokens, greedy)")
    print(f"   {'run':<15}{'TTFT ms':>9}{'total ms':>10}{'tokens/s':>10}")
    for name, (first, total, tokens) in rows:
        print(f"   {name:<15}{first * 1000:>9.1f}{total * 1000:>10.1f}{tokens / total:>10.1f}")
    warm_engine, warm_plain = rows[1][1], rows[3][1]
    print(
        f"   warm engine vs generate: TTFT {warm_plain[0] / warm_engine[0]:.2f}x faster, "
        f"tokens/s {(warm_engine[2] / warm_engine[1]) / (warm_plain[2] / warm_plain[1]):.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps on the tiny model")
    parser.add_argument(
        "--smollm2-steps",
        type=int,
        default=8,
        help="training steps on SmolLM2 (about 2-4 s each on 2 CPU cores)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per configuration on the tiny model (median kept)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()

    from arkor.engine._store import ModelStore
    from tests.utils.tiny_model import build_tiny_model

    models = []
    with tempfile.TemporaryDirectory(prefix="arkor-tiny-") as tiny:
        texts = [message["content"] for row in read_rows(DATA) for message in row["messages"]]
        models.append(str(build_tiny_model(Path(tiny), vocab_size=4000, corpus=texts)))
        if ModelStore().lookup(SMOLLM2) is not None:
            models.append(SMOLLM2)
        else:
            print(
                f"({SMOLLM2} is not in the model store; `arkor models import` it to bench it too)"
            )
        for model in models:
            sized = {"steps": args.smollm2_steps, "repeats": 1} if model == SMOLLM2 else {}
            bench_training(model, argparse.Namespace(**{**vars(args), **sized}))
            bench_inference(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
