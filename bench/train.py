"""Training and inference throughput: the engine against what most users write, in one run.

    python bench/train.py [--steps 30] [--smollm2-steps 8] [--batch-size 8] [--max-length 512]

Training, on the same tokenized rows (the triage template's chat data, ``steps × batch``
rows, so each run makes exactly one pass over the same tokens), the same steps, batch
size, LoRA shape and seed:

- ``engine``: ``arkor.engine.train`` as configured by default (precision ``auto``: bf16
  autocast where the CPU has it natively; ``packing`` on: padding-free batches);
- ``engine fp32``, ``engine unpacked``, ``engine fp32 unpacked``: one switch or both
  turned off (the last is the engine before either existed), to show what each buys;
- ``fixed``: a plain transformers ``Trainer`` + peft script padding every row to
  ``max_length`` (the common script), in fp32;
- ``dynamic``: the same script with per-batch dynamic padding.

Each prints real (non-padding) tokens/s, the ratio to both baselines, the loss of each
trained adapter on the same rows, and MFU: model FLOPs per token × tokens/s over the
peak of the arithmetic the run used (bf16 or fp32, as the engine's ``training.started``
event reports it), each peak timed once per process as a square matmul. FLOPs per token
of LoRA over a frozen base: ``4·N + 6·N_lora + 12·L·s·d`` (N: base parameters less the
input embedding, forward plus activation gradients; N_lora: adapter parameters, forward
plus both gradients; attention QKᵀ and AV over ``L`` layers of width ``d`` at the mean
causal context ``s``, forward plus both operands' gradients). Padding and masked-out
attention earn nothing. Targets: ``engine`` ≥ 1.5x ``fixed``, ≥ 1.0x ``dynamic``, final
loss within 2 % of ``fixed``.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peft import LoraConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATA = REPO / "templates" / "triage" / "data" / "train.jsonl"


ENGINE_VARIANTS: dict[str, dict[str, Any]] = {
    "engine": {"precision": "auto", "packing": True},
    "engine fp32": {"precision": "fp32", "packing": True},
    "engine unpacked": {"precision": "auto", "packing": False},
    "engine fp32 unpacked": {"precision": "fp32", "packing": False},
}
"""The engine's rows: the ``JobConfig`` switches each sets."""

Peaks = dict[tuple[str, str], float]
"""Matmul GFLOP/s by (device kind: ``cpu`` or ``cuda``, arithmetic: ``fp32``/``bf16``/``fp16``)."""


@dataclass
class TrainResult:
    name: str
    tokens_per_second: float
    runtime: float
    loss: float
    precision: str
    """The arithmetic the run used: the peak its MFU is taken against."""
    device: str
    """``cpu`` or ``cuda``: where that peak was timed."""
    packed: bool
    """Whether batches were padding-free."""


def matmul_peak(device: str, precision: str) -> float:
    """GFLOP/s of ``device``'s best square matmul in ``precision`` (2·n³ FLOPs), after a warm-up."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    gpu = device == "cuda"
    n, per_timing = (8192, 10) if gpu else (2048, 1)
    left, right = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def seconds() -> float:
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(per_timing):
            torch.mm(left, right)
        if gpu:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / per_timing

    seconds()
    return 2 * n**3 / min(seconds() for _ in range(8)) / 1e9


def measure_peaks() -> Peaks:
    """Every peak a run here can be divided by, timed once, printed with its label."""
    import torch

    wanted = [("cpu", "fp32"), ("cpu", "bf16")]
    if torch.cuda.is_available():
        wanted += [("cuda", "fp32"), ("cuda", "fp16")]
        if torch.cuda.is_bf16_supported():
            wanted.append(("cuda", "bf16"))
    peaks = {key: matmul_peak(*key) for key in wanted}
    for (device, precision), gflops in peaks.items():
        how = (
            "n=8192, mean of 10"
            if device == "cuda"
            else f"{torch.get_num_threads()} threads, n=2048"
        )
        print(f"{precision} matmul peak ({device}, {how}, best of 8): {gflops:,.0f} GFLOP/s")
    return peaks


def lora_config() -> LoraConfig:
    """The LoRA shape every run trains: the engine's defaults at ``lora_r``/``lora_alpha`` 16."""
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")


def flops_per_token(source: str, lengths: list[int]) -> tuple[float, str]:
    """Model FLOPs per trained token of LoRA over the frozen base at ``source``, and how.

    ``lengths``: the tokens of every row; attention's share grows with each row's length.
    """
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source)
    embedding: Any = base.get_input_embeddings().weight
    head: Any = base.get_output_embeddings()  # type: ignore[no-untyped-call]
    tied = head is not None and head.weight is embedding
    # a lookup, not a matmul; tied, the one tensor is the LM head's and counts once
    parameters = sum(p.numel() for p in base.parameters()) - (0 if tied else embedding.numel())
    config = base.config.get_text_config()
    layers, heads = int(config.num_hidden_layers), int(config.num_attention_heads)
    width = heads * int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    context = sum(length * (length + 1) / 2 for length in lengths) / sum(lengths)
    adapted = get_peft_model(base, lora_config())
    lora = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    total = 4 * parameters + 6 * lora + 12 * layers * context * width
    formula = (
        f"FLOPs/token = 4·N + 6·N_lora + 12·L·s·d = 4·{parameters:,} + 6·{lora:,} "
        f"+ 12·{layers}·{context:.1f}·{width} = {total / 1e6:,.2f} MFLOP\n"
        f"     N: base parameters less the input embedding (a lookup"
        f"{'; tied, counted once as the LM head' if tied else ''}), forward 2·N + activation "
        "gradients 2·N;\n"
        "     N_lora: adapter parameters (r=16, all linear layers), forward, activation and "
        "weight gradients;\n"
        "     attention: QKᵀ and AV, forward 4·L·s·d + gradients of both operands 8·L·s·d, "
        "s = mean causal context\n"
        "     per token = Σ len·(len+1)/2 ÷ Σ len over the rows; padding and masked-out attention "
        "count nothing"
    )
    return total, formula


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
    model: str, args: argparse.Namespace, workdir: Path, rows_file: Path, name: str
) -> tuple[TrainResult, Path]:
    """One engine run of the variant ``name`` (see :data:`ENGINE_VARIANTS`)."""
    from arkor.cloud import TrainingStarted
    from arkor.engine import ListSink, TrainingRun, train

    sink = ListSink()
    outcome = train(
        TrainingRun(
            job_id="bench",
            config=job_config(model, args).model_copy(update=ENGINE_VARIANTS[name]),
            output_dir=workdir / name.replace(" ", "-"),
            sink=sink,
            dataset_file=rows_file,
        )
    )
    if outcome.status != "completed":
        raise SystemExit(f"{name} run {outcome.status}: {outcome.error}")
    started = sink.events[0]
    assert isinstance(started, TrainingStarted) and started.metadata is not None
    assert outcome.adapter_dir is not None
    metrics, metadata = outcome.metrics, started.metadata
    return TrainResult(
        name,
        metrics["tokensSeen"] / metrics["trainRuntime"],
        metrics["trainRuntime"],
        0.0,
        metadata["precision"],
        "cuda" if metadata["device"].startswith("cuda") else "cpu",
        metadata["packing"],
    ), outcome.adapter_dir


def run_plain(
    model: str, args: argparse.Namespace, workdir: Path, *, fixed: bool, examples: list[Any]
) -> tuple[TrainResult, Any]:
    """The script most users write: Trainer + peft, rows padded to max_length (or per batch)."""
    import torch
    from peft import get_peft_model
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
    peft_model = get_peft_model(base, lora_config())
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
        train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in examples],
        data_collator=collator,
    )
    trainer.remove_callback(PrinterCallback)
    metrics = trainer.train().metrics
    runtime = metrics["train_runtime"]
    name = "fixed" if fixed else "dynamic"
    return TrainResult(
        name, trainer.state.num_input_tokens_seen / runtime, runtime, 0.0, "fp32", "cpu", False
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


def bench_training(model: str, args: argparse.Namespace, peaks: Peaks) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from arkor.engine._data import prepare_data
    from arkor.engine._models import load_tokenizer, resolve_model

    resolved = resolve_model(model)
    tokenizer = load_tokenizer(resolved)
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as tmp:
        workdir = Path(tmp)
        # Exactly one pass over the same rows for every run: a length-grouped sampler only
        # reorders them, so all of them train on the same tokens.
        rows_file = workdir / "rows.jsonl"
        rows = read_rows(DATA)[: args.steps * args.batch_size]
        rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        data = prepare_data(
            job_config(model, args), tokenizer, dataset_file=rows_file, cache_dir=workdir / "cache"
        )
        lengths = [len(example.input_ids) for example in data.train]
        flops, formula = flops_per_token(resolved.source, lengths)
        probe = data.train[:64]
        # the first run of a kind in a process pays for warm-up (bf16 kernels included);
        # no measured config should
        warmup = argparse.Namespace(**{**vars(args), "steps": 2})
        run_plain(model, warmup, workdir, fixed=False, examples=data.train)
        run_engine(model, warmup, workdir, rows_file, "engine")
        runs: dict[str, list[TrainResult]] = {
            name: [] for name in [*ENGINE_VARIANTS, "fixed", "dynamic"]
        }
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every run alike
            for name in ENGINE_VARIANTS:
                result, adapter_dir = run_engine(model, args, workdir, rows_file, name)
                base = AutoModelForCausalLM.from_pretrained(resolved.source)
                adapted = PeftModel.from_pretrained(base, adapter_dir)
                result.loss = mean_loss(adapted, tokenizer, probe)
                runs[name].append(result)
            for fixed in (True, False):
                result, trained = run_plain(model, args, workdir, fixed=fixed, examples=data.train)
                result.loss = mean_loss(trained, tokenizer, probe)
                runs[result.name].append(result)
        results = {name: median_run(found) for name, found in runs.items()}
    engine, fixed_run, dynamic = results["engine"], results["fixed"], results["dynamic"]
    print(f"\n== training: {model}")
    print(
        f"   {len(data.train)} rows, tokens per row median {statistics.median(lengths):.0f} / max {max(lengths)}, "
        f"{args.steps} steps x batch {args.batch_size}, max_length {args.max_length}, median of {args.repeats} run(s)"
    )
    print(f"   {formula}")
    print(
        "   MFU = FLOPs/token × tokens/s ÷ the matmul peak of the arithmetic each run used (column peak)"
    )
    print(
        f"   {'run':<22}{'tokens/s':>10}{'runtime s':>11}{'loss':>9}{'MFU':>8}{'peak':>10}"
        f"{'packed':>8}{'vs fixed':>10}{'vs dynamic':>12}"
    )
    for result in results.values():
        mfu = flops * result.tokens_per_second / (peaks[result.device, result.precision] * 1e9)
        print(
            f"   {result.name:<22}{result.tokens_per_second:>10.0f}{result.runtime:>11.2f}"
            f"{result.loss:>9.4f}{mfu:>8.2%}{f'{result.precision} {result.device}':>10}"
            f"{'yes' if result.packed else 'no':>8}"
            f"{result.tokens_per_second / fixed_run.tokens_per_second:>9.2f}x"
            f"{result.tokens_per_second / dynamic.tokens_per_second:>11.2f}x"
        )
    drift = abs(engine.loss - fixed_run.loss) / fixed_run.loss
    speed_fixed = engine.tokens_per_second / fixed_run.tokens_per_second
    speed_dynamic = engine.tokens_per_second / dynamic.tokens_per_second
    print(
        f"   targets: >= 1.5x fixed: {'ok' if speed_fixed >= 1.5 else 'MISSED'}; >= 1.0x dynamic: "
        f"{'ok' if speed_dynamic >= 1.0 else 'MISSED'}; loss within 2 % of fixed: "
        f"{'ok' if drift <= 0.02 else 'MISSED'} ({drift:.2%})"
    )
    unpacked, fp32, old = (
        results["engine unpacked"],
        results["engine fp32"],
        results["engine fp32 unpacked"],
    )
    print(
        f"   switches: packing {engine.tokens_per_second / unpacked.tokens_per_second:.2f}x "
        f"tokens/s (engine / engine unpacked); bf16 "
        f"{engine.tokens_per_second / fp32.tokens_per_second:.2f}x tokens/s (engine / engine "
        f"fp32); loss {(engine.loss - old.loss) / old.loss:+.2%} vs engine fp32 unpacked"
    )
    for result in results.values():
        asked = ENGINE_VARIANTS.get(result.name)
        if asked is not None and asked["packing"] and not result.packed:
            print(f"   note: {result.name} asked for packing but ran padded (the model refused it)")
        if asked is not None and asked["precision"] == "auto" and result.precision == "fp32":
            print(f"   note: {result.name} asked for auto precision and got fp32 (no native bf16)")


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

    from arkor.engine._device import configure_cpu_threads
    from arkor.engine._store import ModelStore
    from tests.utils.tiny_model import build_tiny_model

    configure_cpu_threads()  # as the engine's runs set it, so every run and peak shares it
    peaks = measure_peaks()

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
            bench_training(model, argparse.Namespace(**{**vars(args), **sized}), peaks)
            bench_inference(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
