"""Put a trained adapter in the user's hands: as a portable PEFT folder, merged, or as GGUF.

A job's adapter is trained on whatever folder its base was loaded from (a model store
entry, a Hub cache snapshot); :func:`make_portable` makes it name the base the way the
config did, so ``AutoPeftModelForCausalLM`` and other tools find it anywhere. The three
formats, from the adapter folder a job wrote:

- ``peft``: that folder, portable (the adapter, the tokenizer beside it);
- ``merged``: the base with the adapter merged in, a plain transformers model folder;
- ``gguf``: the merged model as one f16 ``.gguf`` file with its tokenizer and chat
  template, laid out as llama.cpp's ``convert_hf_to_gguf.py`` lays out a Llama model.

Every export is written into a sibling ``DIR.tmp-*`` folder and renamed into place, so
``DIR`` is either the old folder or the whole new one, never half of it. Only the
functions that need torch, transformers, peft or gguf import them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from arkor._fs import atomic_write_text
from arkor.errors import ArkorError, UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arkor.cloud import ModelPin
    from arkor.engine._models import ResolvedModel

ExportFormat = Literal["peft", "merged", "gguf"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("peft", "merged", "gguf")

TRAINER_STATE = re.compile(
    r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth|trainer_state\.json|"
    r"training_args\.bin)$"
)
"""The Trainer's resume state in a checkpoint folder: not part of the adapter."""

Progress = Callable[[str], None]


class ExportError(ArkorError):
    """An adapter cannot be exported as asked; the message says why and what to do."""


def make_portable(folder: Path, model: str, revision: str | None = None) -> None:
    """Make the adapter in ``folder`` name its base as ``model`` (the config's id or path).

    peft records the folder the base was loaded from; rewritten, ``adapter_config.json``
    (and the model card's ``base_model``) names what the user named, and ``revision`` the
    Hub commit it trained on when one was pinned. Every file then gets the mode a new
    file gets here, since the libraries that write them disagree (safetensors writes
    0600 whatever the umask).
    """
    config_path = folder / "adapter_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        loaded_from = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = model
        if revision is not None:
            config["revision"] = revision
        atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
        card = folder / "README.md"
        if isinstance(loaded_from, str) and loaded_from and loaded_from != model and card.is_file():
            text = card.read_text(encoding="utf-8")
            atomic_write_text(card, text.replace(loaded_from, model))
    same_mode(folder)


def _umask() -> int:
    umask = os.umask(0o077)  # reading the umask sets it; the stand-in is the strictest one
    os.umask(umask)
    return umask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file here: 0666 less the umask."""
    return 0o666 & ~_umask()


def same_mode(folder: Path) -> None:
    """Give every file under ``folder`` the mode a new file gets (see :func:`new_file_mode`)."""
    mode = new_file_mode()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


def check_target(out: Path, *, force: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder with files in it unless ``force``."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(
            f"The output {out} exists and is not a folder. Give --out a folder to create (or "
            "an empty one), or move that file away."
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"The output folder {out} already has files in it, and writing there would replace "
            "them. Give another --out, empty the folder, or pass --force to replace it."
        )


@contextmanager
def atomic_folder(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a fresh ``OUT.tmp-*`` folder to fill; on success it becomes ``out``.

    On any failure the temporary folder is removed and ``out`` is left as it was. An
    existing ``out`` (empty, or anything with ``force``) is replaced whole.
    """
    check_target(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~_umask())  # mkdtemp made it 0700
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` is moved aside first, then deleted."""
    if not out.exists():
        staging.rename(out)
        return
    aside = out.with_name(f"{out.name}.old-{secrets.token_hex(4)}")
    out.rename(aside)
    try:
        staging.rename(out)
    except BaseException:
        aside.rename(out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def export_adapter(
    adapter: Path,
    out: Path,
    fmt: ExportFormat,
    *,
    model: str,
    model_pin: ModelPin | None = None,
    name: str = "model",
    force: bool = False,
    progress: Progress | None = None,
) -> list[Path]:
    """Export the adapter folder ``adapter`` (trained on ``model``) to ``out`` as ``fmt``.

    ``model_pin`` is the job's pin of its base: a Hub base loads at the pinned commit, and
    local weights must still be the pinned ones (an adapter merged onto other weights
    would be another model). ``name`` names the ``.gguf`` file. Returns the files written.
    """
    say = progress or (lambda _: None)
    revision = model_pin.revision if model_pin is not None else None
    check_target(out, force=force)
    if not (adapter / "adapter_config.json").is_file():
        raise ExportError(
            f"{adapter} is not a PEFT adapter folder (it has no adapter_config.json), so there "
            "is nothing to export. Export a job's final adapter or one of its checkpoints."
        )
    if fmt == "peft":
        with atomic_folder(out, force=force) as staging:
            for source in sorted(adapter.iterdir()):
                if source.is_file() and not TRAINER_STATE.match(source.name):
                    shutil.copyfile(source, staging / source.name)
            make_portable(staging, model, revision)
        return _listed(out)
    resolved = _base(model, model_pin)
    if fmt == "gguf":
        check_gguf_support(resolved)
    say(f"loading the base model {model}")
    merged, tokenizer = merge_adapter(resolved, adapter)
    with atomic_folder(out, force=force) as staging:
        with _quiet_transformers():
            if fmt == "merged":
                say(f"writing the merged model to {out}")
                merged.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
            else:
                say(f"writing {_file_name(name)}.gguf (f16) to {out}")
                write_gguf(merged, tokenizer, staging / f"{_file_name(name)}.gguf", name=name)
        same_mode(staging)
    return _listed(out)


def _listed(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def _file_name(name: str) -> str:
    """``name`` as a file name: letters, digits, ``.``, ``_`` and ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned or "model"


def _base(model: str, pin: ModelPin | None) -> ResolvedModel:
    """Where the base is, checked against the job's pin (see :func:`export_adapter`)."""
    from arkor.engine._models import locate_model, resolve_located
    from arkor.pins import DigestCache, PinMismatch, check_model_pin

    located = locate_model(model)
    if pin is not None:
        cache = DigestCache()
        try:
            check_model_pin(located, pin, cache)
        except PinMismatch as error:
            raise ExportError(
                f"The base model `{model}` here is not the one the job trained on: its files no "
                f"longer hash to the job's pin (sha256 {str(pin.sha256)[:12]}…), so merging the "
                "adapter into it would make another model. Put the weights the job trained on "
                "back under that name, or export with --format peft and apply the adapter to "
                "the right base yourself."
            ) from error
        finally:
            cache.save()
    return resolve_located(located, revision=pin.revision if pin is not None else None)


def merge_adapter(
    resolved: ResolvedModel, adapter: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base with the adapter merged into its weights, in the base's own dtype, and its tokenizer.

    The merge itself runs in float32 on the CPU, so no precision is lost before the
    result is cast back to the dtype the base was published in.
    """
    import torch
    from peft import PeftModel

    from arkor.engine._device import Placement
    from arkor.engine._models import load_model, load_tokenizer

    with _quiet_transformers():
        tokenizer = load_tokenizer(resolved)
        base = load_model(resolved, Placement("cpu", torch.float32))
        saved_dtype = _published_dtype(resolved)
        try:
            with_adapter = PeftModel.from_pretrained(base, adapter)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ExportError(
                f"Cannot apply the adapter in {adapter} to `{resolved.requested}`: "
                f"{' '.join(str(error).split())} The adapter was trained on another base, or "
                "its files are damaged; download it again with `arkor jobs download`."
            ) from error
        merged = with_adapter.merge_and_unload().to(saved_dtype)
    return merged, tokenizer


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars, info logs or third-party deprecation notices from the libraries:
    the export reports its own steps."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _published_dtype(resolved: ResolvedModel) -> Any:
    """The dtype the base's config.json records (float32 when it records none)."""
    import torch
    from transformers import AutoConfig

    from arkor.engine._models import _load

    config = _load(AutoConfig.from_pretrained, resolved)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32


# --- GGUF ------------------------------------------------------------------------------

_PRE_TOKENIZERS = {
    "gpt-2": [{"type": "ByteLevel", "use_regex": True, "add_prefix_space": False}],
    "smollm": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "use_regex": True, "add_prefix_space": False},
    ],
}
"""The byte-level BPE pre-tokenizers written, by llama.cpp's name for each: GPT-2's split,
and SmolLM's (GPT-2's, with every digit on its own)."""


def check_gguf_support(resolved: ResolvedModel) -> None:
    """Refuse, before any weights load, a base this writer cannot lay out as llama.cpp does."""
    from transformers import AutoConfig, AutoTokenizer

    from arkor.engine._models import _load

    config = _load(AutoConfig.from_pretrained, resolved)
    architectures = getattr(config, "architectures", None) or [config.model_type]
    if config.model_type != "llama":
        raise UsageError(
            f"`arkor export --format gguf` writes Llama-architecture models "
            f"(LlamaForCausalLM, e.g. SmolLM2, TinyLlama), and `{resolved.requested}` is "
            f"{', '.join(architectures)}. Export it with --format merged, then convert that "
            "folder with llama.cpp's convert_hf_to_gguf.py."
        )
    rope = _rope_scaling(config)
    if rope is not None and rope.get("rope_type") not in ("default", "linear"):
        raise UsageError(
            f"`{resolved.requested}` uses {rope.get('rope_type')} rope scaling, which this "
            "GGUF writer does not lay out. Export it with --format merged, then convert that "
            "folder with llama.cpp's convert_hf_to_gguf.py."
        )
    tokenizer = _load(AutoTokenizer.from_pretrained, resolved)
    _pre_tokenizer(tokenizer, resolved.requested)


def _rope_scaling(config: Any) -> dict[str, Any] | None:
    """The config's rope settings when they scale (transformers 5 ``rope_parameters``, or 4's)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if not isinstance(rope, dict):
        return None
    kind = rope.get("rope_type") or rope.get("type")
    return None if kind in (None, "default") else {**rope, "rope_type": kind}


def _rope_theta(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        return float(rope["rope_theta"])
    return float(getattr(config, "rope_theta", 10000.0))


def _pre_tokenizer(tokenizer: PreTrainedTokenizerBase, model: str) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; refuse what it cannot name."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    document = json.loads(backend.to_str()) if backend is not None else {}
    kind = (document.get("model") or {}).get("type")
    pre = document.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for name, expected in _PRE_TOKENIZERS.items():
        if (
            kind == "BPE"
            and len(steps) == len(expected)
            and all(
                all(step.get(key) == value for key, value in want.items())
                for step, want in zip(steps, expected, strict=True)
            )
        ):
            return name
    raise UsageError(
        f"The tokenizer of `{model}` is not a byte-level BPE tokenizer with GPT-2's or "
        "SmolLM's pre-tokenizer, the ones this GGUF writer lays out (tokenizer.ggml.model "
        "gpt2). Export it with --format merged, then convert that folder with llama.cpp's "
        "convert_hf_to_gguf.py."
    )


def write_gguf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, *, name: str
) -> None:
    """Write a Llama ``model`` and its tokenizer to ``path`` as llama.cpp's converter does.

    Hyperparameters under ``llama.*``; 2-D weights in f16 and norms in f32; the q/k
    projections permuted into llama.cpp's rotary layout; tied embeddings written once
    (``token_embd``, which llama.cpp reuses as the output); the vocabulary as
    ``tokenizer.ggml.*`` (tokens, types, merges, special ids) with the chat template.
    """
    import gguf
    import numpy as np

    config = model.config
    n_head = int(config.num_attention_heads)
    n_kv_head = int(getattr(config, "num_key_value_heads", None) or n_head)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    blocks = int(config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv_head)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    rope = _rope_scaling(config)
    if rope is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    _write_vocab(writer, tokenizer, config, str(getattr(model, "name_or_path", name)))

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, blocks)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(
                f"The model's tensor `{hf_name}` has no llama.cpp name, so this is not a plain "
                "Llama model. Export it with --format merged, then convert that folder with "
                "llama.cpp's convert_hf_to_gguf.py."
            )
        data = tensor.detach().float()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, n_head, n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, n_head, n_kv_head)
        array = data.numpy()
        writer.add_tensor(gguf_name, array if array.ndim <= 1 else array.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _permute(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's row order for the rotary halves of a q/k projection (its ``permute``)."""
    heads = n_head_kv if n_head != n_head_kv else n_head
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _write_vocab(writer: Any, tokenizer: PreTrainedTokenizerBase, config: Any, model: str) -> None:
    """The ``tokenizer.ggml.*`` keys and the chat template, as llama.cpp's ``_set_vocab_gpt2``."""
    import gguf

    vocab_size = int(config.vocab_size)
    vocab: dict[str, int] = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(
            f"The tokenizer of `{model}` has ids beyond the model's {vocab_size} embeddings, so "
            "the two do not belong together. Export with --format merged instead."
        )
    by_id = {index: token for token, index in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if token in added:
            if not decoder[index].normalized:
                token = str(tokenizer.decode(tokenizer.encode(token, add_special_tokens=False)))
            if decoder[index].special or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(tokenizer, model))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        config.to_json_file(str(Path(scratch, "config.json")))
        special = gguf.SpecialVocab(scratch, load_merges=True, n_vocab=vocab_size)
    special.add_to_gguf(writer, quiet=True)
    for kind, token_id, position in (
        ("bos", tokenizer.bos_token_id, 0),
        ("eos", tokenizer.eos_token_id, -1),
    ):
        if kind not in special.add_special_token:
            getattr(writer, f"add_add_{kind}_token")(_adds(tokenizer, token_id, position))
    if special.chat_template is None and getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _adds(tokenizer: PreTrainedTokenizerBase, token_id: int | None, position: int) -> bool:
    """Whether encoding text puts ``token_id`` at ``position`` (0: first, -1: last)."""
    if token_id is None:
        return False
    plain = tokenizer.encode("a", add_special_tokens=False)
    framed = tokenizer.encode("a")
    return len(framed) > len(plain) and framed[position] == token_id


def _looks_special(token: str) -> bool:
    """Added tokens some models forget to mark special (llama.cpp's ``does_token_look_special``)."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )
