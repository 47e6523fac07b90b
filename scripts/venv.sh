#!/usr/bin/env bash
# Create or update the virtual environment DIR that the tests and the demo run in.
#   bash scripts/venv.sh DIR            # every package from requirements/lock.txt (hashes
#                                       # checked), then Arkor itself, editable, without deps
#   bash scripts/venv.sh DIR --latest   # the newest versions pyproject.toml allows, for
#                                       # finding drift on purpose; torch stays the CPU build
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:?usage: bash scripts/venv.sh DIR [--latest]}"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# The CPU torch is not on PyPI: where pip's own configuration (a find-links folder or an
# index) doesn't offer it, take it from PyTorch's CPU index.
torch_pin="$(grep -m1 '^torch==' requirements/torch-cpu.txt)"
if ! "${pip[@]}" --dry-run --no-index --no-deps "$torch_pin" >/dev/null 2>&1 &&
  ! "${pip[@]}" --dry-run --no-deps "$torch_pin" >/dev/null 2>&1; then
  pip+=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
if [[ "${2:-}" == "--latest" ]]; then
  "${pip[@]}" --upgrade --upgrade-strategy eager -c requirements/torch-cpu.txt -e '.[dev,local,server,ray]'
else
  "${pip[@]}" --require-hashes -r requirements/lock.txt
  "${pip[@]}" --no-deps -e .
fi
