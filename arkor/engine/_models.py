"""Resolve a config's ``model`` to weights on disk and load them.

A ``model`` is, in order: a folder on disk; a ``.gguf`` file (converted once into a
cache under the model store); a name in the local model store; else a HuggingFace Hub
id, loaded through the normal HF cache. Every way it can fail ends in a
:class:`ModelError` that says how to fix it, the air-gapped fix included.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arkor.cloud import ModelKind
from arkor.errors import ArkorError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arkor.engine._device import Placement


class ModelError(ArkorError):
    """The model cannot be found or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class LocatedModel:
    """Where a config's ``model`` points, before anything is loaded or converted."""

    requested: str
    kind: ModelKind
    path: Path | None
    """The folder, the ``.gguf`` file or the store entry's folder; None for a Hub id."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a config's ``model`` points, ready for ``from_pretrained``."""

    requested: str
    source: str
    """What ``from_pretrained`` receives: a local folder, or a Hub id."""
    kind: ModelKind
    revision: str | None = None
    """The Hub commit to load (a Hub id only); None loads the default branch."""


def locate_model(model: str) -> LocatedModel:
    """Find what ``model`` names (see the module docstring for the order); loads nothing.

    Needs only the standard library, so ``arkor build`` can pin the model without the engine.
    """
    from arkor.engine._store import ModelStore, model_folder_problem

    path = Path(model).expanduser()
    try:
        path.exists()
    except OSError as error:  # too long a name, say: no path, and no Hub id either
        raise ModelError(
            f"Cannot load the model `{model[:100]}`: it is neither a path this system can "
            f"open ({error.strerror}) nor a Hub id. Give a model folder, a .gguf file, a model "
            "store id or a Hub id."
        ) from None
    if path.is_dir():
        problem = model_folder_problem(path)
        if problem is not None:
            raise ModelError(
                f"The model folder {path} {problem}, so there is no model to load. Point "
                "`model` at a transformers model folder (config.json plus *.safetensors or *.bin "
                "weights), a .gguf file, a model store id or a Hub id."
            )
        return LocatedModel(model, "folder", path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(
                f"The model {path} is a single file, and the only single-file format Arkor "
                "loads is .gguf. Point `model` at the folder that holds config.json and the weights."
            )
        return LocatedModel(model, "gguf", path.resolve())
    stored = ModelStore().lookup(model)
    if stored is not None:
        return LocatedModel(model, "store", stored)
    if _looks_like_path(model):
        raise ModelError(
            f"Cannot load the model `{model}`: the path {path} does not exist. Check the path "
            f"(relative paths start from {Path.cwd()}), or give a model store id or a Hub id instead."
        )
    return LocatedModel(model, "hub", None)


def resolve_model(
    model: str, *, revision: str | None = None, progress: Callable[[str], None] | None = None
) -> ResolvedModel:
    """Find the weights ``model`` names, converting a ``.gguf`` file on first use.

    ``revision`` is the Hub commit to load a Hub id at. ``progress`` hears about the one
    slow step: converting a ``.gguf`` file the first time.
    """
    return resolve_located(locate_model(model), revision=revision, progress=progress)


def resolve_located(
    located: LocatedModel,
    *,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ResolvedModel:
    """:func:`resolve_model` for a model already located."""
    from arkor.engine._store import ModelStore

    if located.path is None:
        return ResolvedModel(located.requested, located.requested, "hub", revision)
    if located.kind == "gguf":
        folder = ModelStore().gguf_folder(located.path, progress=progress)
        return ResolvedModel(located.requested, str(folder), "gguf")
    return ResolvedModel(located.requested, str(located.path), located.kind)


def load_tokenizer(resolved: ResolvedModel) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, resolved)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer  # type: ignore[no-any-return]


def load_model(
    resolved: ResolvedModel, placement: Placement, *, load_in_4bit: bool = False
) -> PreTrainedModel:
    """The causal LM, on ``placement``'s device and dtype; NF4-quantized with ``load_in_4bit``."""
    from transformers import AutoModelForCausalLM

    if not load_in_4bit:
        model = _load(AutoModelForCausalLM.from_pretrained, resolved, dtype=placement.dtype)
        return model.to(placement.device)  # type: ignore[no-any-return]
    check_4bit(placement)
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_compute_dtype=placement.dtype, bnb_4bit_quant_type="nf4"
    )
    # bitsandbytes places the weights while it loads them; a 4-bit model cannot be moved after.
    return _load(  # type: ignore[no-any-return]
        AutoModelForCausalLM.from_pretrained,
        resolved,
        dtype=placement.dtype,
        quantization_config=quantization,
        device_map={"": placement.device},
    )


def check_4bit(placement: Placement) -> None:
    """Raise unless ``load_in_4bit`` can work here: it needs a CUDA GPU and bitsandbytes."""
    missing = []
    if not placement.on_gpu:
        missing.append(f"a CUDA GPU (this run is on {placement.device})")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes (not installed)")
    if missing:
        raise ModelError(
            f"`load_in_4bit` needs a CUDA GPU and bitsandbytes (`pip install bitsandbytes`), "
            f"and this machine lacks {' and '.join(missing)}. Run on a CUDA machine with "
            "bitsandbytes installed, or set `load_in_4bit = false` to load the model unquantized."
        )


def require_chat_template(tokenizer: PreTrainedTokenizerBase, model_name: str) -> None:
    """Raise unless the tokenizer can format chat rows (``messages``) into text."""
    if getattr(tokenizer, "chat_template", None):
        return
    raise ModelError(
        f"The tokenizer of `{model_name}` has no chat template, so chat data (rows with "
        "`messages`) cannot be turned into text for it. Use a model that has one (usually its "
        "instruct or chat variant), give the tokenizer one (a chat_template.jinja file or "
        "`chat_template` in tokenizer_config.json next to the weights), or provide the data in "
        "the prompt_completion or text format instead."
    )


def _looks_like_path(model: str) -> bool:
    """Whether ``model`` was meant as a path (a Hub id has at most one ``/`` and no suffix)."""
    return (
        model.startswith((".", "/", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.lower().endswith(".gguf")
    )


def _load(loader: Any, resolved: ResolvedModel, **kwargs: Any) -> Any:
    if resolved.kind == "hub":
        from arkor.pins import hub_cache_dir

        # the cache the pin was resolved in, as the environment names it now
        kwargs["cache_dir"] = str(hub_cache_dir())
    if resolved.revision is not None:
        kwargs["revision"] = resolved.revision
    try:
        return loader(resolved.source, **kwargs)
    except (OSError, ValueError) as error:
        detail = " ".join(str(error).split()).rstrip(".") + "."
        if resolved.kind == "hub" and resolved.revision is not None:
            raise ModelError(
                f"Cannot load the model `{resolved.requested}` at the commit the manifest pinned "
                f"({resolved.revision[:12]}) from the Hugging Face Hub or its local cache: "
                f"{detail} Check the network; offline, that commit must be in the Hub cache "
                "(HF_HUB_CACHE). If the commit is gone from the Hub, run `arkor build "
                "--upgrade-model` to pin the current one."
            ) from error
        if resolved.kind == "hub":
            raise ModelError(
                f"Cannot load the model `{resolved.requested}` from the Hugging Face Hub or its "
                f"local cache: {detail} Check the id and the network. On an air-gapped machine, "
                "copy the model (a folder or a .gguf file) in and register it under this id with "
                f"`arkor models import PATH --name {resolved.requested}`."
            ) from error
        raise ModelError(
            f"Cannot load the model `{resolved.requested}` from {resolved.source}: {detail} The "
            "folder may be incomplete or from a newer transformers; import it again or "
            "upgrade transformers."
        ) from error
