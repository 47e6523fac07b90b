"""``create_arkor``: the project object a Python entry module exports for ``run_trainer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from arkor.sdk._trainer import Trainer


@dataclass(frozen=True)
class Arkor:
    """A project: today, the one trainer it runs."""

    trainer: Trainer


def create_arkor(*, trainer: Trainer) -> Arkor:
    """Wrap ``trainer`` so ``run_trainer("my_project/main.py")`` finds it as ``arkor``."""
    return Arkor(trainer)


def is_arkor(value: Any) -> TypeGuard[Arkor]:
    """Whether ``value`` is what :func:`create_arkor` returns."""
    return isinstance(value, Arkor)
