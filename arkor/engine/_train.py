"""One LoRA fine-tuning run, read top to bottom: check, set up, train, save, clean up.

The loop is transformers' ``Trainer`` (the field's own machinery: optimisers,
schedulers, checkpoint and resume logic, evaluation) driven through one callback that
turns its hooks into Arkor events and honours the stop signal at every step. Batches
are grouped by length and padded per batch, so short chat rows don't pay for long ones.

Every outcome is an event: ``training.started``, ``training.log`` every
``logging_steps``, ``checkpoint.saved`` every ``save_steps``, then exactly one of
``training.completed``, ``training.failed`` or ``training.cancelled``. :func:`train`
never raises for a failed run; it reports it.

With ``trainer.eval``, the held-out rows are written to ``eval/held-out.jsonl`` and,
once the training model is freed, the base and the adapter answer them:
``eval.completed`` comes before ``training.completed`` (and after each
``checkpoint.saved`` with ``at_checkpoints``). An evaluation that fails is reported in
its event; the run still completes.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from transformers import (
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import get_last_checkpoint

from arkor.cloud import (
    Artifact,
    CheckpointSaved,
    JobConfig,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from arkor.engine._data import DRY_RUN_EVAL_ROWS, PreparedData, prepare_data
from arkor.engine._device import Placement, TrainingPrecision, choose_placement, training_precision
from arkor.engine._eval import HELD_OUT_PATH, EvalTarget, evaluate, failed_eval, write_held_out
from arkor.engine._export import make_portable
from arkor.engine._infer import GenerationStopped, InferenceEngine
from arkor.engine._models import (
    check_4bit,
    load_model,
    load_tokenizer,
    resolve_located,
)
from arkor.engine._packing import honours_packed_rows, packing_collator
from arkor.engine._pinned import check_stack, pinned_model
from arkor.engine._run import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME, TrainingOutcome, TrainingRun
from arkor.errors import ArkorError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arkor.engine._parallel import Rank

DRY_RUN_MAX_STEPS = 5


def train(run: TrainingRun, rank: Rank | None = None) -> TrainingOutcome:
    """Run the job to its end and report every stage as an event (see the module docstring).

    With ``rank``, this process is that rank of a data-parallel run (see
    :mod:`arkor.engine._parallel`): only rank 0 reports, and it evaluates and saves once
    the other ranks have exited.
    """
    recipe = LoraRecipe(run, rank)
    with warnings.catch_warnings():
        # Saving the adapter of a Hub model, peft asks the Hub whether the base's vocabulary
        # was resized; Arkor never resizes it, and offline the question only prints a warning.
        warnings.filterwarnings("ignore", "Could not find a config file in", UserWarning)
        try:
            recipe.setup()
            if run.stop.is_set():
                return recipe.finish_cancelled()
            recipe.train()
            if rank is not None:
                rank.finish()
            if run.stop.is_set() or recipe.stopped:
                return recipe.finish_cancelled()
            return recipe.finish_completed()
        except Exception as error:  # every failure becomes a training.failed event
            return recipe.finish_failed(rank.explain(error) if rank is not None else error)
        finally:
            recipe.release()


class LoraRecipe:
    """The stages of one run, in the order :func:`train` calls them."""

    def __init__(self, run: TrainingRun, rank: Rank | None = None) -> None:
        self.run = run
        self.rank = rank
        """This process's rank of a data-parallel run; None for a run of one process."""
        self.config = run.config
        self.checkpoints_dir = run.output_dir / CHECKPOINTS_DIRNAME
        self.adapter_dir = run.output_dir / ADAPTER_DIRNAME
        self.trainer: Trainer | None = None
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.data: PreparedData | None = None
        self.train_metrics: dict[str, Any] = {}
        self.resume_from: str | None = None
        """The checkpoint this run continues from (``run.resume`` and one exists)."""
        self.placement: Placement | None = None
        """Where the model runs: the run's (or this rank's) device, as inference loads it."""
        self.packed = False
        """Whether batches are padding-free (``packing`` on and the model honours it)."""
        self.base: tuple[str, str | None] = (self.config.model, None)
        """The base as the inference engine loads it: the config's name and the pinned commit."""
        self.eval_engine: InferenceEngine | None = None
        self.base_answers: dict[str, str] = {}
        """The base's answers by held-out row hash: the same for every checkpoint."""
        self.callback: _EventsCallback | None = None

    def setup(self) -> None:
        """Reject impossible runs, then load the model, the data and the trainer, in that order."""
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        placement = self.placement = self.run.placement or (
            self.rank.placement() if self.rank is not None else choose_placement()
        )
        precision = training_precision(placement, self.config.precision)
        if self.config.load_in_4bit:
            check_4bit(placement)
        stack, warnings = check_stack(self.config)
        model = pinned_model(self.config)
        revision = model.pin.revision if model.pin is not None else None
        resolved = resolve_located(model.located, revision=revision)
        self.base = (self.config.model, revision)
        tokenizer = load_tokenizer(resolved)
        self.data = prepare_data(
            self.config,
            tokenizer,
            dataset_file=self.run.dataset_file,
            cache_dir=self.run.output_dir / "cache",
            eval_file=self.run.eval_file,
        )
        set_seed(self.seed)
        base = load_model(
            resolved, precision.placement, load_in_4bit=bool(self.config.load_in_4bit)
        )
        lora = self.model = self._with_lora(base)
        lora.config.use_cache = False  # training needs no cache; packed rows need it off
        self.tokenizer = tokenizer
        self.packed = self.config.packing is not False and honours_packed_rows(lora)
        if self.rank is not None and not self.rank.join(self.run.stop):
            return  # stopped while the other ranks loaded
        self.trainer = self._build_trainer(lora, tokenizer, precision)
        if self.rank is not None:
            self.resume_from = self.rank.resume_from
        elif self.run.resume and self.checkpoints_dir.is_dir():
            self.resume_from = get_last_checkpoint(str(self.checkpoints_dir))  # type: ignore[no-untyped-call]
        resumed = (
            {"resumedFromStep": _checkpoint_step(self.resume_from)} if self.resume_from else {}
        )
        self.run.sink.emit(
            TrainingStarted(
                job_id=self.run.job_id,
                metadata={
                    "model": self.config.model,
                    "device": placement.device,
                    **self._parallel_metadata(),
                    "dtype": str(precision.placement.dtype).removeprefix("torch."),
                    "precision": precision.arithmetic,
                    "packing": self.packed,
                    "trainableParameters": sum(
                        p.numel() for p in lora.parameters() if p.requires_grad
                    ),
                    "trainRows": self.data.rows,
                    "evalRows": len(self.data.eval or ()),
                    **self._held_out_metadata(),
                    "maxSteps": self.trainer.args.max_steps,
                    "dryRun": bool(self.config.dry_run),
                    **resumed,
                    # the digest, not every file's: the manifest lists those, events stay small
                    "modelPin": model.pin.model_copy(update={"files": None}).to_wire()
                    if model.pin is not None
                    else None,
                    "dataPin": self.data.pin or None,
                    "stack": stack,
                    **({"warnings": warnings} if warnings else {}),
                },
            )
        )

    def train(self) -> None:
        """Run the optimisation loop until the step budget, the data or the stop signal ends it."""
        assert self.trainer is not None
        output = self.trainer.train(resume_from_checkpoint=self.resume_from)
        self.train_metrics = dict(output.metrics)

    def save_adapter(self) -> list[Artifact]:
        """Write the final adapter in PEFT format with the tokenizer beside it, portable.

        It names its base as the config does, not the local folder the base was loaded
        from, and its files share one mode (see :func:`portable_checkpoint`).
        """
        assert self.trainer is not None and self.model is not None
        self.model.save_pretrained(self.adapter_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(self.adapter_dir)
        portable_checkpoint(self.adapter_dir, self.config)
        return artifacts_under(self.adapter_dir, self.run.output_dir)

    @property
    def stopped(self) -> bool:
        """Whether a stop (on any rank) ended the training loop early."""
        return self.callback is not None and self.callback.stopped

    def finish_completed(self) -> TrainingOutcome:
        if self.rank is not None and not self.rank.is_lead:
            return TrainingOutcome("completed", self.step, {"step": self.step}, None)
        artifacts = self.save_adapter()
        if self.data is not None and self.data.held_out is not None:
            write_held_out(self.run.output_dir / HELD_OUT_PATH, self.data.held_out.items)
            artifacts.append(_artifact(self.run.output_dir, HELD_OUT_PATH))
        step = self.step
        metrics = {
            "step": step,
            "trainLoss": self.train_metrics.get("train_loss"),
            "trainRuntime": self.train_metrics.get("train_runtime"),
            "trainSamplesPerSecond": self.train_metrics.get("train_samples_per_second"),
            "tokensSeen": self._tokens_seen(),
            "evalLoss": self._last_eval_loss(),
        }
        metrics = {key: value for key, value in metrics.items() if value is not None}
        if self.data is not None and self.data.held_out is not None:
            self.cleanup()  # the training model's memory goes before the base is loaded again
            self.evaluate(self.adapter_dir, step=step, final=True)
        self.run.sink.emit(
            TrainingCompleted(job_id=self.run.job_id, metrics=metrics, artifacts=artifacts)
        )
        return TrainingOutcome("completed", step, metrics, self.adapter_dir)

    def finish_cancelled(self) -> TrainingOutcome:
        step = self.step
        self.run.sink.emit(TrainingCancelled(job_id=self.run.job_id, step=step))
        return TrainingOutcome("cancelled", step, {"step": step}, None)

    def finish_failed(self, error: Exception) -> TrainingOutcome:
        message = (
            str(error) if isinstance(error, ArkorError) else f"{type(error).__name__}: {error}"
        )
        step = self.step
        self.run.sink.emit(TrainingFailed(job_id=self.run.job_id, error=message, step=step or None))
        return TrainingOutcome("failed", step, {"step": step}, None, message)

    def evaluate(
        self, adapter: Path, *, step: int, checkpoint: int | None = None, final: bool = False
    ) -> None:
        """Emit the ``eval.completed`` of ``adapter`` against the base; nothing when stopped.

        One inference engine serves every evaluation of the run, so the base is loaded
        once; its answers are kept, so each checkpoint asks only the adapter.
        """
        assert self.data is not None and self.data.held_out is not None
        spec = self.config.eval
        assert spec is not None
        held = self.data.held_out
        target = EvalTarget(
            job_id=self.run.job_id,
            base_model=self.base[0],
            base_revision=self.base[1],
            adapter=adapter,
            step=step,
            checkpoint=checkpoint,
            final=final,
        )
        try:
            if self.eval_engine is None:
                self.eval_engine = InferenceEngine(max_bases=1, placement=self.placement)
            # loading and running a model must not move the RNG training goes on with
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
                event = evaluate(
                    held.items,
                    spec,
                    self.eval_engine,
                    target,
                    seed=self.seed,
                    rows=min(spec.rows, DRY_RUN_EVAL_ROWS) if self.config.dry_run else None,
                    base_answers=self.base_answers,
                    stop=self.run.stop,
                )
        except GenerationStopped:
            return
        except Exception as error:  # a failed evaluation is reported; the run still completes
            event = failed_eval(target, error)
        self.run.sink.emit(event)

    def cleanup(self) -> None:
        """Free the model and, on a GPU, its memory; the files stay."""
        self.trainer = None
        self.model = None
        gc.collect()  # the trainer and its callbacks refer to each other
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def release(self) -> None:
        """Free everything :meth:`cleanup` does and the evaluation's base model too."""
        self.eval_engine = None
        self.cleanup()

    def _parallel_metadata(self) -> dict[str, Any]:
        if self.rank is None:
            return {}
        return {"processes": self.rank.size, "devices": self.rank.devices}

    def _held_out_metadata(self) -> dict[str, int]:
        held = self.data.held_out if self.data is not None else None
        if held is None:
            return {}
        return {
            "heldOutRows": len(held.items),
            **({"duplicatesDropped": held.duplicates} if held.duplicates else {}),
        }

    @property
    def seed(self) -> int:
        return self.config.seed if self.config.seed is not None else 42

    @property
    def step(self) -> int:
        return self.trainer.state.global_step if self.trainer is not None else 0

    def _with_lora(self, base: PreTrainedModel) -> PreTrainedModel:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if self.config.load_in_4bit:
            base = prepare_model_for_kbit_training(base)  # type: ignore[no-untyped-call]
        lora = LoraConfig(
            r=self.config.lora_r or 16,
            lora_alpha=self.config.lora_alpha or 16,
            lora_dropout=self.config.lora_dropout or 0.0,
            target_modules=self.config.lora_target_modules or "all-linear",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, lora)  # type: ignore[return-value]

    def _build_trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        precision: TrainingPrecision,
    ) -> Trainer:
        assert self.data is not None
        callback = self.callback = _EventsCallback(self.run, self.config.batch_size or 4, self.rank)
        spec = self.config.eval
        lead = self.rank is None or self.rank.is_lead
        if spec is not None and spec.at_checkpoints and self.data.held_out is not None and lead:
            callback.on_checkpoint = lambda folder, step: self.evaluate(
                folder, step=step, checkpoint=step
            )
        trainer = (Trainer if self.rank is None else _RankTrainer)(
            model=model,
            args=self._training_arguments(precision, has_eval=bool(self.data.eval)),
            train_dataset=_Examples(self.data.train),
            eval_dataset=_Examples(self.data.eval) if self.data.eval else None,
            data_collator=packing_collator()
            if self.packed
            else DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
            processing_class=tokenizer,
            callbacks=[callback],
        )
        callback.trainer = trainer
        _remove_console_callbacks(trainer)
        return trainer

    def _training_arguments(
        self, precision: TrainingPrecision, *, has_eval: bool
    ) -> TrainingArguments:
        config = self.config
        max_steps = config.max_steps if config.max_steps is not None else -1
        save_steps = config.save_steps or 100
        logging_steps = config.logging_steps or 10
        if config.dry_run:
            max_steps = min(max_steps if max_steps > 0 else DRY_RUN_MAX_STEPS, DRY_RUN_MAX_STEPS)
            save_steps = min(save_steps, max_steps)
            logging_steps = 1
        eval_steps = config.eval_steps or save_steps
        return TrainingArguments(
            output_dir=str(self.checkpoints_dir),
            max_steps=max_steps,
            num_train_epochs=config.num_train_epochs or 1.0,
            per_device_train_batch_size=config.batch_size or 4,
            per_device_eval_batch_size=config.batch_size or 4,
            learning_rate=config.learning_rate or 2e-4,
            optim=config.optim or "adamw_torch",
            lr_scheduler_type=config.lr_scheduler_type or "linear",
            weight_decay=config.weight_decay or 0.0,
            warmup_steps=config.warmup_steps or 0,
            logging_steps=logging_steps,
            save_strategy="steps",
            save_steps=save_steps,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=eval_steps if has_eval else None,
            seed=self.seed,
            data_seed=self.seed,
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            use_cpu=not precision.placement.on_gpu,
            bf16=precision.arithmetic == "bf16",
            fp16=precision.arithmetic == "fp16",
            **_length_grouping_options(packed=self.packed),
            **(self.rank.training_options() if self.rank is not None else {}),
        )

    def _tokens_seen(self) -> int | None:
        if self.trainer is None:
            return None
        seen = getattr(self.trainer.state, "num_input_tokens_seen", None)
        return int(seen) if seen else None

    def _last_eval_loss(self) -> float | None:
        if self.trainer is None:
            return None
        for entry in reversed(self.trainer.state.log_history):
            if "eval_loss" in entry:
                return float(entry["eval_loss"])
        return None


class _RankTrainer(Trainer):
    """The Trainer of one rank of a data-parallel run: the same rows per step as one process.

    Rows are grouped by length in groups sized by the global batch (every rank's rows of a
    step), not by one rank's; the rows of each step are then dealt out to the ranks.
    """

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return _RankZeroOrder(
                sampler.batch_size * self.args.world_size,
                lengths=sampler.lengths,
                device=self.args.device,
            )
        return sampler


class _RankZeroOrder(LengthGroupedSampler):
    """Each epoch's length-grouped order, drawn by rank 0 as one process draws it, sent to all.

    Every rank must deal out the same order; their RNGs part as soon as anything random
    (dropout) runs on batches of different shapes.
    """

    def __init__(self, batch_size: int, *, lengths: list[int], device: torch.device) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.device = device

    def __iter__(self) -> Iterator[int]:
        import torch.distributed as dist

        order = torch.zeros(len(self.lengths), dtype=torch.long, device=self.device)
        if dist.get_rank() == 0:
            drawn = get_length_grouped_indices(self.lengths, self.batch_size)  # type: ignore[no-untyped-call]
            order = torch.tensor(drawn, dtype=torch.long, device=self.device)
        dist.broadcast(order, src=0)
        return iter(order.tolist())


class _Examples:
    """The tokenized examples as the map-style dataset the Trainer's sampler expects."""

    def __init__(self, examples: list[Any]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


def _checkpoint_step(checkpoint: str) -> int:
    """The step of a ``checkpoint-<step>`` folder."""
    return int(Path(checkpoint).name.rpartition("-")[2])


def _length_grouping_options(*, packed: bool) -> dict[str, Any]:
    """Batch rows of similar length and count real tokens, in whichever spelling this transformers has.

    A packed batch holds no padding, so every token counts (and, having no attention mask,
    counting "non-padding" ones would drop real tokens equal to the pad token).
    """
    fields = {item.name: item for item in dataclasses.fields(TrainingArguments)}
    options: dict[str, Any] = {}
    if "train_sampling_strategy" in fields:  # transformers 5
        options["train_sampling_strategy"] = "group_by_length"
    else:
        options["group_by_length"] = True
    tokens_seen = fields.get("include_num_input_tokens_seen")
    if tokens_seen is not None:
        options["include_num_input_tokens_seen"] = (
            "non_padding" if isinstance(tokens_seen.default, str) and not packed else True
        )
    return options


def _remove_console_callbacks(trainer: Trainer) -> None:
    """Events are the run's output; the Trainer's own printing would only duplicate them."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def portable_checkpoint(folder: Path, config: JobConfig) -> None:
    """Make an adapter folder name its base as ``config.model`` names it (and the pinned Hub
    commit), so it loads anywhere that model does, with one file mode for all its files."""
    pin = config.model_pin
    make_portable(folder, config.model, pin.revision if pin is not None else None)


def _artifact(root: Path, path: str) -> Artifact:
    return Artifact(path=path, size=(root / path).stat().st_size)


def artifacts_under(folder: Path, root: Path) -> list[Artifact]:
    """Every file under ``folder``, by its path relative to ``root``, with its size."""
    return [
        Artifact(path=path.relative_to(root).as_posix(), size=path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


class _EventsCallback(TrainerCallback):
    """Turns Trainer hooks into Arkor events and stops at the first step end after a cancel.

    Of a data-parallel run, every rank stops at the same step end (the ranks all-reduce
    their stop flags there) and rank 0 alone reports.
    """

    def __init__(self, run: TrainingRun, batch_size: int, rank: Rank | None = None) -> None:
        self.run = run
        self.rank = rank
        self.reports = rank is None or rank.is_lead
        self.batch_size = batch_size * (rank.size if rank is not None else 1)
        """Rows per optimizer step, over every rank."""
        self.stopped = False
        self.trainer: Trainer | None = None
        self.on_checkpoint: Callable[[Path, int], None] | None = None
        """Called with each checkpoint's folder and step after its ``checkpoint.saved``."""
        self._window_start = time.perf_counter()
        self._window_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._window_start = time.perf_counter()
        self._window_step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        stop = self.run.stop.is_set()
        if self.rank is not None:
            stop = self.rank.any_stop(stop)
        if stop:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        logs = logs or {}
        if not self.reports:
            return
        if "loss" not in logs and "eval_loss" not in logs:
            return  # the end-of-training summary; training.completed carries it
        now = time.perf_counter()
        steps = state.global_step - self._window_step
        rate = (
            steps * self.batch_size / (now - self._window_start)
            if steps and now > self._window_start
            else None
        )
        if "loss" in logs:
            self._window_start, self._window_step = now, state.global_step
        self.run.sink.emit(
            TrainingLog(
                job_id=self.run.job_id,
                step=state.global_step,
                loss=logs.get("loss"),
                eval_loss=logs.get("eval_loss"),
                learning_rate=logs.get("learning_rate"),
                epoch=logs.get("epoch"),
                samples_per_second=round(rate, 3) if rate is not None and "loss" in logs else None,
            )
        )

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.reports:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            portable_checkpoint(folder, self.run.config)
        self.run.sink.emit(
            CheckpointSaved(
                job_id=self.run.job_id,
                step=state.global_step,
                artifacts=artifacts_under(folder, self.run.output_dir) if folder.is_dir() else None,
            )
        )
        if self.on_checkpoint is not None and folder.is_dir() and not self.run.stop.is_set():
            self.on_checkpoint(folder, state.global_step)
