"""The engine's own greedy answer, computed in the test process: the reference a plane's answer must match."""

from __future__ import annotations

from pathlib import Path


def greedy_answer(
    model: Path, adapter: Path | None, messages: list[dict[str, str]], max_tokens: int
) -> str:
    """What :class:`arkor.engine.InferenceEngine` answers at temperature 0 (``adapter`` None: the base)."""
    from arkor.engine import GenerationRequest, InferenceEngine

    request = GenerationRequest(str(model), adapter, messages, temperature=0, max_tokens=max_tokens)
    return InferenceEngine().complete(request).choices[0].message.content
