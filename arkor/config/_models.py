"""The config models: the one source of truth for what ``arkor.toml`` may say.

The JSON Schema in ``schemas/arkor.schema.json`` is generated from these classes, so a
field's ``description``, ``default`` and ``examples`` here are what an editor shows on
hover and offers on completion. Every model forbids unknown keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_REFERENCE_PATTERN = r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$"
"""A whole-value reference to an environment variable, the only way to give a secret."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CALLBACK_PATTERN = rf"^{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*|\.{_IDENT})$"
"""``package.module:function`` (attribute paths allowed after the colon) or ``package.module.function``."""

SECRET_FIELDS: frozenset[tuple[str, ...]] = frozenset(
    {("trainer", "dataset", "token"), ("trainer", "dataset", "url")}
)
"""Key paths that may carry secrets: their ``${env:…}`` references are kept as written at
load and in the manifest, and resolved only by ``arkor start`` (a download URL may hold a
signed query string; a token is always a reference)."""

_URL_PATTERN = r"^(https?://|\$\{env:)\S+$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HuggingfaceDataset(_Section):
    """A dataset on the HuggingFace Hub, loaded with `datasets.load_dataset`."""

    model_config = ConfigDict(title="HuggingFace dataset")

    type: Literal["huggingface"] = Field(
        description='Where the data comes from: `"huggingface"` loads a Hub dataset by name.',
    )
    name: str = Field(
        min_length=1,
        description="The dataset's Hub id, `owner/name`.",
        examples=["arkorlab/triage-demo", "HuggingFaceH4/no_robots"],
    )
    split: str = Field(
        default="train",
        min_length=1,
        description="The split to train on.",
        examples=["train", "train[:90%]"],
    )
    subset: str | None = Field(
        default=None,
        min_length=1,
        description="The dataset configuration (subset) name, for datasets that have several.",
        examples=["default"],
    )


class BlobDataset(_Section):
    """A JSONL, JSON, CSV or Parquet file downloaded over HTTP(S)."""

    model_config = ConfigDict(title="Blob dataset")

    type: Literal["blob"] = Field(
        description='Where the data comes from: `"blob"` downloads a file from a URL.',
    )
    url: str = Field(
        pattern=_URL_PATTERN,
        description=(
            "The file's URL. The format comes from its extension (`.jsonl`, `.json`, `.csv`, "
            "`.parquet`) or the response's content type. `${env:NAME}` references in it (a "
            "signed query string) stay references in the manifest; `arkor start` fills them in."
        ),
        examples=[
            "https://example.com/data/train.jsonl",
            "https://example.com/train.jsonl?sig=${env:DATA_SIG}",
        ],
    )
    token: str | None = Field(
        default=None,
        pattern=ENV_REFERENCE_PATTERN,
        description=(
            "Bearer token sent with the download. It is a secret, so it must name an "
            'environment variable, as `"${env:NAME}"`; the manifest keeps the reference and '
            "`arkor start` reads the value."
        ),
        examples=["${env:DATASET_TOKEN}"],
    )


class FileDataset(_Section):
    """A local JSONL, JSON, CSV or Parquet file, uploaded to the control plane by `arkor start`."""

    model_config = ConfigDict(title="Local file dataset")

    type: Literal["file"] = Field(
        description='Where the data comes from: `"file"` reads a file on this machine.',
    )
    path: str = Field(
        min_length=1,
        description=(
            "Path to the file, relative to the config file that names it. `.jsonl`, `.json`, "
            "`.csv` and `.parquet` are read."
        ),
        examples=["data/train.jsonl"],
    )


DatasetSource = Annotated[
    HuggingfaceDataset | BlobDataset | FileDataset,
    Field(discriminator="type"),
]


class ChatFormat(_Section):
    """Rows hold a list of chat messages with OpenAI roles."""

    model_config = ConfigDict(title="Chat format")

    type: Literal["chat"] = Field(description="Each row is a conversation.")
    messages: str = Field(
        default="messages",
        min_length=1,
        description="The column holding the list of `{role, content}` messages.",
        examples=["messages", "conversations"],
    )


class PromptCompletionFormat(_Section):
    """Rows hold a prompt and the completion to learn."""

    model_config = ConfigDict(title="Prompt/completion format")

    type: Literal["prompt_completion"] = Field(description="Each row is a prompt and a completion.")
    prompt: str = Field(
        default="prompt",
        min_length=1,
        description="The column holding the prompt.",
        examples=["prompt", "question", "instruction"],
    )
    completion: str = Field(
        default="completion",
        min_length=1,
        description="The column holding the completion.",
        examples=["completion", "answer", "response"],
    )


class TextFormat(_Section):
    """Rows hold plain text for continued pre-training."""

    model_config = ConfigDict(title="Text format")

    type: Literal["text"] = Field(description="Each row is one plain text.")
    text: str = Field(
        default="text",
        min_length=1,
        description="The column holding the text.",
        examples=["text", "content"],
    )


DatasetFormatName = Literal["auto", "chat", "prompt_completion", "text"]
PrecisionName = Literal["auto", "bf16", "fp16", "fp32"]
DatasetFormatMapping = Annotated[
    ChatFormat | PromptCompletionFormat | TextFormat,
    Field(discriminator="type"),
]


class Lora(_Section):
    """The LoRA adapter's shape."""

    model_config = ConfigDict(title="LoRA")

    r: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Rank of the low-rank update matrices. Higher learns more and costs more.",
        examples=[8, 16, 32, 64],
    )
    alpha: int = Field(
        default=16,
        ge=1,
        description="Scaling of the update (`alpha / r`). Often equal to `r` or twice it.",
        examples=[16, 32],
    )
    dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout applied to the LoRA layers' input during training.",
        examples=[0.0, 0.05, 0.1],
    )
    target_modules: str | list[str] = Field(
        default="all-linear",
        description=(
            'Which modules get adapters: `"all-linear"` (every linear layer but the output '
            "head, right for any architecture) or a list of module names."
        ),
        examples=["all-linear", ["q_proj", "k_proj", "v_proj", "o_proj"]],
    )
    max_length: int = Field(
        default=1024,
        ge=8,
        description="Longest sequence in tokens; longer rows are truncated.",
        examples=[512, 1024, 2048, 4096],
    )
    load_in_4bit: bool = Field(
        default=False,
        description="Load the base model quantised to 4 bits (QLoRA). Needs a CUDA GPU and bitsandbytes.",
    )


class Callbacks(_Section):
    """Python functions called as the run's events arrive.

    Each is a dotted import path, `package.module:function` or `package.module.function`,
    importable from the project root, taking one context argument.
    """

    model_config = ConfigDict(title="Callbacks")

    on_started: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description="Called once when training starts.",
        examples=["my_project.callbacks:on_started"],
    )
    on_log: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description="Called on every `training.log` event with step, loss and learning rate.",
        examples=["my_project.callbacks:on_log"],
    )
    on_checkpoint: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description="Called when a checkpoint is saved; its context can run inference on it.",
        examples=["my_project.callbacks:on_checkpoint"],
    )
    on_completed: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description="Called once when training completes, with final metrics and artifacts.",
        examples=["my_project.callbacks:on_completed"],
    )
    on_failed: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description="Called once when training fails, with the error.",
        examples=["my_project.callbacks:on_failed"],
    )
    on_eval: str | None = Field(
        default=None,
        pattern=CALLBACK_PATTERN,
        description=(
            "Called on every `eval.completed` event with the base-vs-adapter metrics on the "
            "held-out rows (after training, and at checkpoints with `eval.at_checkpoints`)."
        ),
        examples=["my_project.callbacks:on_eval"],
    )


BUILTIN_METRICS = ("exact_match", "json_valid", "json_match", "contains", "rouge_l")
"""The metrics Arkor computes itself; anything else in ``trainer.eval.metrics`` is a dotted path."""
BuiltinMetric = Literal["exact_match", "json_valid", "json_match", "contains", "rouge_l"]
MetricName = Annotated[
    BuiltinMetric | Annotated[str, Field(pattern=CALLBACK_PATTERN)],
    Field(
        description=(
            "A built-in metric (`exact_match`, `json_valid`, `json_match`, `contains`, "
            "`rouge_l`) or a custom one by dotted path, `package.module:function`, called "
            "as `function(prediction, reference, row)` and returning a float in [0, 1] or a "
            "dict of them."
        ),
        examples=["json_match", "rouge_l", "my_project.metrics:f1"],
    ),
]


class Eval(_Section):
    """Evaluation of the adapter against its base model on held-out rows.

    Both answer the same held-out prompts with the same greedy settings; each metric
    compares their answers with the rows' own answers. The held-out rows are never
    trained on.
    """

    model_config = ConfigDict(title="Evaluation")

    held_out: Annotated[float, Field(gt=0, lt=1)] | Annotated[str, Field(min_length=1)] | None = (
        Field(
            default=None,
            description=(
                "The rows to evaluate on: a fraction of the training data held out from training "
                '(e.g. `0.1`), or the name of a split of a HuggingFace dataset (e.g. `"test"`). '
                "Unset: the rows `trainer.dataset_split` holds out, else a 0.1 fraction. Leave it "
                "unset when `path` names a file."
            ),
            examples=[0.1, 0.2, "test"],
        )
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "A file of held-out rows in the training data's format (`.jsonl`, `.json`, `.csv`, "
            "`.parquet`), relative to the config file. Then no training row is held out."
        ),
        examples=["data/eval.jsonl"],
    )
    rows: int = Field(
        default=32,
        ge=1,
        le=1000,
        description=(
            "Evaluate on at most this many held-out rows (a seeded sample when there are "
            "more). Fewer than 20 rows give metrics too coarse to trust, and the output says so."
        ),
        examples=[32, 100],
    )
    metrics: list[MetricName] = Field(
        default=["exact_match"],
        min_length=1,
        max_length=32,
        description=(
            "What to measure, on the base model and on the adapter: `exact_match` (answer equals "
            "the reference, whitespace trimmed), `json_valid` (answer parses as JSON), "
            "`json_match` (fields of a JSON answer that equal the reference's, with a precision "
            "per key), `contains` (answer contains the reference), `rouge_l` (longest common "
            "word subsequence, F-measure), or `package.module:function` for your own."
        ),
        examples=[
            ["json_valid", "json_match"],
            ["rouge_l"],
            ["exact_match", "my_project.metrics:f1"],
        ],
    )
    max_new_tokens: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="The longest answer generated per row, in tokens. Answers are greedy (temperature 0).",
        examples=[64, 128, 512],
    )
    batch_size: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Rows generated together in one batch.",
        examples=[8, 16],
    )
    at_checkpoints: bool = Field(
        default=False,
        description=(
            "Also evaluate each checkpoint as it is saved (the base once). It holds a second "
            "copy of the base model in memory while training."
        ),
    )


_MEMORY_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
}
_MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)? ?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"


def memory_bytes(memory: str) -> int:
    """``trainer.resources.memory`` (``"16GiB"``, ``"512 MB"``) in bytes."""
    match = re.fullmatch(_MEMORY_PATTERN, memory)
    if match is None:
        raise ValueError(f"`{memory}` is not an amount of memory such as 16GiB or 512MB.")
    return int(float(memory[: match.start(2)]) * _MEMORY_UNITS[match.group(2)])


class Resources(_Section):
    """What the job's worker needs from the machine that runs it.

    A plane in front of a Ray cluster (`arkor serve --executor ray`) waits for a node with
    this much free; unset keys take the plane's defaults. Two or more GPUs (or `processes`)
    train data-parallel: one process per device, the same global batch per step.
    """

    model_config = ConfigDict(title="Resources")

    gpus: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description=(
            "GPUs the job needs, all on one machine. Two or more train data-parallel, one "
            "process per GPU. Unset: the plane's default (one GPU where the machine has one)."
        ),
        examples=[1, 2, 8],
    )
    cpus: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="CPU cores to reserve for the job on a Ray cluster. Unset: the plane's default.",
        examples=[1, 4, 8],
    )
    memory: str | None = Field(
        default=None,
        pattern=_MEMORY_PATTERN,
        description='Memory to reserve for the job on a Ray cluster, e.g. `"16GiB"`. Unset: none reserved.',
        examples=["16GiB", "64GB"],
    )
    processes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "Data-parallel training processes. Unset: one per GPU, or one on a machine "
            "without GPUs. On CPU, two or more train over gloo (slower than one: it is for "
            "checking the data-parallel path without GPUs)."
        ),
        examples=[2, 4],
    )


SchedulerName = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]


class Trainer(_Section):
    """One fine-tuning run: the base model, the data, the adapter and the hyperparameters."""

    model_config = ConfigDict(title="Trainer")

    name: str = Field(
        min_length=1,
        max_length=100,
        description="The run's name, shown in job lists and Studio.",
        examples=["support-bot-v1"],
    )
    model: str = Field(
        min_length=1,
        description=(
            "The base model: a HuggingFace Hub id, a name in the local model store "
            "(`arkor models list`), a folder on disk, or a `.gguf` file."
        ),
        examples=[
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "unsloth/gemma-4-E4B-it",
            "unsloth/gemma-4-E2B-it",
            "Qwen/Qwen3-0.6B",
        ],
    )
    dataset: DatasetSource = Field(
        description=(
            'The training data. Set `type` first: `"huggingface"` (name, split, subset), '
            '`"blob"` (url, token) or `"file"` (path).'
        ),
    )
    dataset_format: DatasetFormatName | DatasetFormatMapping = Field(
        default="auto",
        description=(
            'How rows are read: `"chat"` (a `messages` list), `"prompt_completion"`, `"text"`, '
            'or `"auto"` to detect from the columns. A table maps other column names, e.g. '
            '`{ type = "prompt_completion", prompt = "question", completion = "answer" }`.'
        ),
        examples=["auto", "chat", "prompt_completion", "text"],
    )
    dataset_split: (
        Annotated[float, Field(gt=0, lt=1)] | Annotated[str, Field(min_length=1)] | None
    ) = Field(
        default=None,
        description=(
            "Evaluation data for eval loss: a fraction of the training rows to hold out "
            '(e.g. `0.1`), or the name of a split of a HuggingFace dataset (e.g. `"test"`). '
            "Unset means no evaluation."
        ),
        examples=[0.1, "test", "validation"],
    )
    lora: Lora = Field(default_factory=Lora, description="The LoRA adapter's shape.")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many optimiser steps. Takes precedence over `num_train_epochs`.",
        examples=[60, 100, 1000],
    )
    num_train_epochs: float = Field(
        default=1.0,
        gt=0,
        description="Passes over the training data, when `max_steps` is not set.",
        examples=[1, 3],
    )
    learning_rate: float = Field(
        default=2e-4,
        gt=0,
        lt=1,
        description="Peak learning rate of the optimiser.",
        examples=[2e-4, 1e-4, 5e-5],
    )
    batch_size: int = Field(
        default=4,
        ge=1,
        description="Rows per optimiser step on one device.",
        examples=[1, 2, 4, 8],
    )
    optim: str = Field(
        default="adamw_torch",
        pattern=r"^[a-z0-9_]+$",
        description="The optimiser, by its name in transformers' `TrainingArguments.optim`.",
        examples=["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adafactor", "sgd"],
    )
    lr_scheduler_type: SchedulerName = Field(
        default="linear",
        description="How the learning rate changes over the run, as transformers names it.",
    )
    weight_decay: float = Field(
        default=0.0,
        ge=0,
        description="Weight decay applied by the optimiser.",
        examples=[0.0, 0.01],
    )
    warmup_steps: int = Field(
        default=0,
        ge=0,
        description="Steps over which the learning rate rises from 0 to its peak.",
        examples=[0, 5, 100],
    )
    logging_steps: int = Field(
        default=10,
        ge=1,
        description="Emit a `training.log` event (and call `on_log`) every this many steps.",
        examples=[1, 10],
    )
    save_steps: int = Field(
        default=100,
        ge=1,
        description="Save a checkpoint (and call `on_checkpoint`) every this many steps.",
        examples=[50, 100, 500],
    )
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        description="Measure eval loss every this many steps, when `dataset_split` gives eval data. Defaults to `save_steps`.",
        examples=[50, 100],
    )
    train_on_responses_only: bool = Field(
        default=True,
        description="Learn only from the assistant's turns: prompts are masked out of the loss.",
    )
    precision: PrecisionName = Field(
        default="auto",
        description=(
            'The arithmetic training runs in. `"auto"`: bf16 where the hardware computes it '
            "natively (a GPU that supports it; on a CPU with AVX512-BF16 or AMX, as autocast "
            'over fp32 weights), else fp16 on a GPU and fp32 on a CPU. `"bf16"` or `"fp32"` '
            'forces one; `"fp16"` needs a GPU.'
        ),
        examples=["auto", "bf16", "fp32"],
    )
    packing: bool = Field(
        default=True,
        description=(
            "Padding-free batches: a batch's rows are joined into one sequence, positions "
            "restarting and attention kept within each row, so no compute goes to padding. "
            "Used where the model's attention honours row boundaries (checked before "
            "training, else batches are padded); `false` always pads."
        ),
    )
    seed: int = Field(
        default=42,
        ge=0,
        description="Random seed; the same seed and config give the same loss curve.",
        examples=[42],
    )
    dry_run: bool = Field(
        default=False,
        description="Run every stage on a small sample (at most 32 rows, 5 steps) to check the pipeline quickly.",
    )
    strict_stack: bool = Field(
        default=False,
        description=(
            "Refuse to train when the worker's torch, transformers, peft, accelerate or datasets "
            "version differs from the one `arkor build` recorded in the manifest. Off: the "
            "difference is a warning in the run's events."
        ),
    )
    eval: Eval | None = Field(
        default=None,
        description=(
            "Evaluate the adapter against its base model on held-out rows after training: "
            "`arkor start` ends with a table of metric, base, adapter and change."
        ),
    )
    resources: Resources = Field(
        default_factory=Resources,
        description=(
            "GPUs, CPUs and memory the job needs, and its data-parallel processes. Used by a "
            "plane that runs jobs on a Ray cluster; GPUs and processes everywhere."
        ),
    )
    callbacks: Callbacks = Field(
        default_factory=Callbacks,
        description="Python functions called as the run's events arrive, by dotted import path.",
    )


class Cloud(_Section):
    """Which control plane `arkor start` talks to."""

    model_config = ConfigDict(title="Cloud")

    url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description=(
            "Base URL of the control plane. Unset: `ARKOR_CLOUD_API_URL`, then the URL in your "
            "credentials, then a local plane on this machine."
        ),
        examples=["http://127.0.0.1:8765", "https://arkor.example.com"],
    )


class ArkorConfig(_Section):
    """An Arkor project's configuration: one fine-tuning run and where to run it."""

    model_config = ConfigDict(title="Arkor configuration")

    extends: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Another config file (TOML or YAML) this one builds on, relative to this file. "
            "Keys set here override it; tables merge key by key."
        ),
        examples=["base.toml", "../shared/arkor.base.toml"],
    )
    trainer: Trainer = Field(description="The fine-tuning run.")
    cloud: Cloud = Field(default_factory=Cloud, description="Which control plane runs the job.")
