"""Resolve a config's ``model`` to weights on disk and load them.

A ``model`` is, in order: a folder on disk; a ``.gguf`` file; a name in the local model
store; else a HuggingFace Hub id, loaded through the normal HF cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from arkor.errors import ArkorError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arkor.engine._device import Placement

ModelKind = Literal["folder", "gguf", "store", "hub"]


class ModelError(ArkorError):
    """The model cannot be found or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a config's ``model`` points."""

    requested: str
    source: str
    """What ``from_pretrained`` receives: a local folder, or a Hub id."""
    kind: ModelKind


def resolve_model(model: str) -> ResolvedModel:
    """Find the weights ``model`` names (see the module docstring for the order)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return ResolvedModel(model, str(path.resolve()), "folder")
    return ResolvedModel(model, model, "hub")


def load_tokenizer(resolved: ResolvedModel) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, resolved)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer  # type: ignore[no-any-return]


def load_model(resolved: ResolvedModel, placement: Placement) -> PreTrainedModel:
    """The causal LM, on ``placement``'s device and dtype."""
    from transformers import AutoModelForCausalLM

    model = _load(AutoModelForCausalLM.from_pretrained, resolved, dtype=placement.dtype)
    return model.to(placement.device)  # type: ignore[no-any-return]


def _load(loader: Any, resolved: ResolvedModel, **kwargs: Any) -> Any:
    try:
        return loader(resolved.source, **kwargs)
    except OSError as error:
        raise ModelError(
            f"Cannot load the model `{resolved.requested}`: {error}. Check the id or path; for an "
            "air-gapped machine, copy the weights in and register them with `arkor models import`."
        ) from error
