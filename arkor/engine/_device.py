"""Where and how a model runs: device, dtype and CPU threads.

CPU: fp32 on the host's threads (``ARKOR_CPU_THREADS`` overrides). GPU: bf16 where the
card supports it, else fp16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arkor._env import env_int

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


def configure_cpu_threads() -> int:
    """Use every host thread for CPU math unless ``ARKOR_CPU_THREADS`` says otherwise."""
    import torch

    configured = env_int("ARKOR_CPU_THREADS", minimum=1, example="4", default="every host thread")
    threads = configured or os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
