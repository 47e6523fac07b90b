"""Write small Arkor projects to disk for tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

CHAT_ROW = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]
}

MINIMAL_TOML = """\
[trainer]
name = "demo"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
max_steps = 10

[trainer.dataset]
type = "file"
path = "data/train.jsonl"
"""


def write(root: Path, relative: str, text: str) -> Path:
    """Write dedented ``text`` to ``root/relative``, creating folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_jsonl(root: Path, relative: str, rows: list[Any]) -> Path:
    """Write ``rows`` as JSON Lines."""
    return write(root, relative, "".join(json.dumps(row) + "\n" for row in rows))


def minimal_project(root: Path, config: str = MINIMAL_TOML, rows: int = 3) -> Path:
    """A project that validates and builds: ``arkor.toml`` plus a small chat dataset."""
    write_jsonl(root, "data/train.jsonl", [CHAT_ROW] * rows)
    return write(root, "arkor.toml", config)


def callbacks_project(root: Path, body: str, package: str = "demo_pkg") -> None:
    """A package with a ``callbacks`` module holding ``body``."""
    write(root, f"{package}/__init__.py", "")
    write(root, f"{package}/callbacks.py", body)
