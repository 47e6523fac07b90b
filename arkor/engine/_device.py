"""Where and how a model runs: device, dtype, training arithmetic and CPU threads.

CPU: fp32 weights on the host's threads (``ARKOR_CPU_THREADS`` overrides); training runs
under bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX). GPU: bf16
where the card supports it, else fp16. ``trainer.precision`` overrides the training choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arkor._env import env_int
from arkor.errors import ArkorError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Placement:
    """The device and dtype a model is loaded with."""

    device: str
    dtype: torch.dtype

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def choose_placement(device: str | None = None) -> Placement:
    """Pick CUDA when present (or ``ARKOR_DEVICE``/``device`` says so), else the CPU."""
    import torch

    wanted = device or os.environ.get("ARKOR_DEVICE")
    if wanted is None:
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Placement(wanted, dtype)
    configure_cpu_threads()
    return Placement("cpu", torch.float32)


@dataclass(frozen=True)
class TrainingPrecision:
    """How a run trains: the placement its model loads with and the arithmetic it runs in."""

    placement: Placement
    arithmetic: str
    """``bf16``, ``fp16`` or ``fp32``: what the Trainer's mixed precision (autocast) computes in."""

    @property
    def autocast(self) -> bool:
        """Whether the Trainer computes in a narrower type than the weights are held in."""
        import torch

        return self.arithmetic != "fp32" and self.placement.dtype == torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where bf16 pays."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def training_precision(
    placement: Placement, setting: str | None, *, native_bf16: bool | None = None
) -> TrainingPrecision:
    """The arithmetic ``trainer.precision`` (``setting``; None means ``auto``) asks for here.

    ``auto``: on a GPU the placement's half type, loaded as such; on a CPU bf16 autocast over
    fp32 weights where it is native (``native_bf16``, probed when None), else fp32. A forced
    ``fp32`` on a GPU loads fp32 weights; ``fp16`` on a CPU, or ``bf16`` on a GPU without
    it, is refused.
    """
    import torch

    wanted = setting or "auto"
    if placement.on_gpu:
        if wanted == "auto":
            return TrainingPrecision(placement, _dtype_names()[placement.dtype])
        if wanted == "fp32":
            return TrainingPrecision(Placement(placement.device, torch.float32), "fp32")
        if wanted == "bf16" and not torch.cuda.is_bf16_supported():
            raise ArkorError(
                'trainer.precision is "bf16", which this GPU does not support: use "fp16" or '
                '"auto" (fp16 on this card).'
            )
        dtype = torch.bfloat16 if wanted == "bf16" else torch.float16
        return TrainingPrecision(Placement(placement.device, dtype), wanted)
    if wanted == "fp16":
        raise ArkorError(
            'trainer.precision is "fp16", which needs a GPU, and this run is on the CPU: use '
            '"auto" (bf16 where the CPU has it natively), "bf16" or "fp32".'
        )
    if wanted == "auto":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        wanted = "bf16" if native else "fp32"
    return TrainingPrecision(Placement(placement.device, torch.float32), wanted)


def _dtype_names() -> dict[torch.dtype, str]:
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def configure_cpu_threads() -> int:
    """Use every host thread for CPU math unless ``ARKOR_CPU_THREADS`` says otherwise."""
    import torch

    configured = env_int("ARKOR_CPU_THREADS", minimum=1, example="4", default="every host thread")
    threads = configured or os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
