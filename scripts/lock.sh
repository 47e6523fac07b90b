#!/usr/bin/env bash
# Refresh requirements/lock.txt, the pinned and hashed environment that scripts/test.sh and
# scripts/demo.sh install: Arkor's dependencies with every extra (dev, local, server, ray) and
# torch as the CPU build (requirements/torch-cpu.txt), for CPython 3.11 on Linux x86_64.
#   bash scripts/lock.sh                               # add what pyproject.toml gained, keep other pins
#   bash scripts/lock.sh --upgrade                     # move every pin to the newest that resolves
#   bash scripts/lock.sh --upgrade-package transformers
# pip-tools resolves with pip itself, so it reads this machine's pip configuration (the
# find-links folder with the CPU torch wheel, the local indexes, the constraints file) and
# pins the same files pip installs. uv and poetry read none of it: they resolve torch from
# PyPI as a CUDA build with about 15 nvidia-* wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.venv-lock
if [[ ! -x "$tools/bin/pip-compile" ]]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2
fi
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/bin/pip-compile" --quiet \
  --all-extras --strip-extras --allow-unsafe --generate-hashes \
  --no-emit-index-url --no-emit-find-links \
  --output-file requirements/lock.txt pyproject.toml requirements/torch-cpu.txt "$@"
"$tools/bin/python" - requirements/lock.txt <<'PY'
import sys
from pathlib import Path

HEADER = """\
# Every package of the test and demo environment, pinned and hashed: Arkor with all extras
# (dev, local, server, ray), torch as the CPU build. Made by pip-tools (pip-compile) because it
# resolves with pip and this machine's pip configuration, which is where the CPU torch wheel
# is found; uv and poetry would pin a CUDA torch from PyPI. Hashes cover the local torch
# file too. Install: scripts/test.sh or scripts/demo.sh. Refresh: bash scripts/lock.sh.
"""
path = Path(sys.argv[1])
text = path.read_text(encoding="utf-8")
path.write_text(HEADER + text.removeprefix(HEADER), encoding="utf-8")
PY
