"""The engine refuses a transformers too old to keep typed control tokens as text."""

from __future__ import annotations

import importlib.metadata

import pytest

from arkor.engine._deps import MIN_TRANSFORMERS, MissingExtraError, _release, require_local


def test_the_installed_transformers_is_new_enough() -> None:
    require_local()
    assert _release(importlib.metadata.version("transformers")) >= MIN_TRANSFORMERS


@pytest.mark.parametrize(
    ("version", "release"),
    [("5.20.0", (5, 20, 0)), ("5.20.0.dev0", (5, 20, 0)), ("5.19", (5, 19)), ("6.0rc1", (6,))],
)
def test_release_numbers(version: str, release: tuple[int, ...]) -> None:
    assert _release(version) == release


def test_an_older_transformers_is_refused_with_the_upgrade_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "5.17.0" if name == "transformers" else real(name),
    )
    with pytest.raises(MissingExtraError) as caught:
        require_local()
    message = str(caught.value)
    assert "5.17.0" in message and "pip install -U 'transformers>=5.20'" in message
