"""Padding-free batches: a batch's rows joined into one sequence, each row attending to itself.

transformers' flattening collator concatenates the rows and restarts ``position_ids`` at
each row; with no attention mask, the model's attention derives one causal block per row
from those positions (flash-attention varlen on a GPU, a block-diagonal mask for SDPA and
eager), so no compute goes to padding and the loss is the padded batch's. Whether a given
model honours that is checked on the model itself before training: two rows run apart and
packed must give the same logits. The first label of every row is masked, so no row learns
to predict the next row's first token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_PROBE_LENGTHS = (7, 5)
_TOLERANCE = {"fp32": 1e-4, "half": 2e-2}
"""Largest logit difference between the rows apart and packed, relative to the logits' scale:
kernel shapes differ, so half precision rounds differently; a row that sees its neighbour
differs far more."""


def packing_collator() -> Any:
    """The collator of padding-free batches: ``input_ids``, ``labels`` and ``position_ids``."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)  # type: ignore[no-untyped-call]


def honours_packed_rows(model: PreTrainedModel) -> bool:
    """Whether ``model`` keeps packed rows apart: the same logits for two rows, apart and packed.

    Runs in eval mode without gradients (dropout off), then restores the mode. A model with
    ``use_cache`` on gets a fresh cache each call, and a cache turns the packed-row mask off:
    a training model has it off (as the Trainer sets it), and so must the one checked here.
    """
    import torch

    parameter = next(model.parameters())
    vocab = int(getattr(model.config, "vocab_size", 0) or 0) or 256
    generator = torch.Generator().manual_seed(0)
    rows = [
        torch.randint(0, min(vocab, 1000), (length,), generator=generator)
        for length in _PROBE_LENGTHS
    ]
    positions = torch.cat([torch.arange(len(row)) for row in rows])[None]
    training = model.training
    model.eval()  # type: ignore[no-untyped-call]
    try:
        with torch.no_grad():
            apart = torch.cat(
                [model(input_ids=row[None].to(parameter.device)).logits[0] for row in rows]
            )
            packed = model(
                input_ids=torch.cat(rows)[None].to(parameter.device),
                position_ids=positions.to(parameter.device),
            ).logits[0]
    except (TypeError, ValueError, RuntimeError):  # a model that takes no position_ids
        return False
    finally:
        model.train(training)
    apart, packed = apart.float(), packed.float()
    scale = float(apart.abs().max()) or 1.0
    tolerance = _TOLERANCE["fp32" if parameter.dtype == torch.float32 else "half"]
    return float((apart - packed).abs().max()) <= tolerance * scale
