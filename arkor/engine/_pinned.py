"""What the worker does with a job's pins before it trains.

The model: a Hub id loads at the pinned commit; local weights (a folder, a store entry, a
``.gguf`` file) must still hash to the pin, or the run is refused with what changed; an
unpinned model is pinned here, the same way ``arkor build`` would, and that is what the
run reports it trained on. The stack: a release that differs from the build's is a
warning, or a refusal with ``strict_stack``.
"""

from __future__ import annotations

from dataclasses import dataclass

from arkor.cloud import JobConfig, ModelPin
from arkor.engine._models import LocatedModel, locate_model
from arkor.errors import ArkorError


class StackMismatch(ArkorError):
    """The worker's training stack differs from the build's and ``strict_stack`` is set."""


@dataclass(frozen=True)
class PinnedModel:
    """The model to train: where it is, and the pin it was checked against or given here."""

    located: LocatedModel
    pin: ModelPin | None
    """None only for a Hub model neither the Hub nor the cache could name a commit for."""


def pinned_model(config: JobConfig) -> PinnedModel:
    """Locate the job's model and check it against its pin, or pin it now (see the module doc).

    Raises :class:`~arkor.pins.PinMismatch` when local weights changed since the build.
    """
    from arkor.pins import DigestCache, NotOnHub, Unresolved, check_model_pin, pin_located

    located = locate_model(config.model)
    cache = DigestCache()
    try:
        if config.model_pin is not None:
            check_model_pin(located, config.model_pin, cache)
            return PinnedModel(located, config.model_pin)
        try:
            pin, _ = pin_located(located, cache)
        except (Unresolved, NotOnHub):
            return PinnedModel(located, None)
        return PinnedModel(located, pin)
    finally:
        cache.save()


def check_stack(config: JobConfig) -> tuple[dict[str, str], list[str]]:
    """This worker's stack versions, and a warning when they differ from the build's.

    Raises :class:`StackMismatch` instead of warning when the job sets ``strict_stack``.
    """
    from arkor.pins import installed_stack, stack_differences

    running = installed_stack() or {}
    built = config.build_stack
    if not built:
        return running, []
    differences = stack_differences(built, running)
    if not differences:
        return running, []
    listed = "; ".join(differences)
    if config.strict_stack:
        pins = " ".join(f"{name}=={version}" for name, version in sorted(built.items()))
        raise StackMismatch(
            f"Refusing to train: this worker's training stack differs from the one `arkor "
            f"build` recorded ({listed}), and the config sets `strict_stack = true`. Install "
            f"the build's versions where the job runs (pip install {pins}), or rebuild the "
            "manifest on this stack with `arkor build`."
        )
    return running, [
        f"The training stack differs from the build's ({listed}), so the adapter may not "
        "match what the manifest describes. Rebuild on this stack (`arkor build`) to record "
        "it, or set `strict_stack = true` to refuse such runs."
    ]
